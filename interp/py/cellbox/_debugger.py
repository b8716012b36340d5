"""The Jupyter debugger protocol (JupyterLab's visual debugger), as ipykernel.

A frontend sends Debug Adapter Protocol (DAP) requests in debug_request
messages on the control channel and gets the responses in debug_reply; the
DAP events come as debug_event messages on IOPub. As in ipykernel, the
debugging itself is debugpy's: `initialize` starts debugpy in this process
(debugpy.listen: its adapter runs as a child process, pydevd traces the
code), and this module is a client of the adapter over its TCP socket. It
answers the Jupyter extensions of the protocol itself:

- dumpCell: write a cell's code to the file the kernel compiles it as,
  <tmp>/ipykernel_<pid>/<murmur2 hash>.py (debugInfo tells the frontend the
  hash and the prefix, so it can find the file of any cell). Cells are
  always compiled under these names (cell_file, as ipykernel's), so
  breakpoints set in the frontend match the code that runs. The folder is
  named like ipykernel's because that is what libraries look for to
  recognise notebook cells (numba's cache, line_profiler, executing, rich).
- debugInfo, source, configurationDone, inspectVariables and
  richInspectVariables (the variable explorer without a breakpoint),
  modules, copyToGlobals; stackTrace without the kernel's own frames;
  variables without the kernel's hidden names.

Threads: handle() runs on the kernel's control thread (C, with the GIL), so
requests are answered while a cell runs or is paused at a breakpoint. A
reader thread takes the adapter's messages: a response wakes the request
waiting for it (matched by seq: the kernel numbers the requests it sends, so
its own requests never get a frontend's response), an event goes to the
events thread, which publishes them in order (and first asks the adapter
which threads stopped, as ipykernel does). debugpy is started from the
control thread; the interp thread is traced from the next cell on
(trace_this_thread, called by the shell before each cell while ACTIVE).

Ownership: one Debugger per kernel (get()); its sockets and threads live
until disconnect; debugpy itself, once listening, stays for the process
(it cannot be stopped), as in ipykernel.
"""
import json
import os
import re
import sys
import threading

import _cellbox_c

HASH_SEED = 0xC70F6907
ACTIVE = False                # between initialize and disconnect: cells are traced
_debugger = None


def tmp_dir():
    import tempfile
    try:
        tmp = tempfile.gettempdir()
    except OSError:     # no writable temporary folder: cells are still named (nothing is written)
        tmp = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, "ipykernel_%d" % os.getpid())


def cell_file(code):
    """The file a cell's code is compiled as while debugging (and dumpCell writes)."""
    try:
        h = _cellbox_c.murmur2(code, HASH_SEED)
    except UnicodeEncodeError:   # lone surrogates
        h = _cellbox_c.murmur2(code.encode("utf-8", "surrogatepass"), HASH_SEED)
    return os.path.join(tmp_dir(), "%d.py" % h)


def cleanup():
    """At kernel exit: remove the folder of cell files (dumpCell), which is
    this process's own (its pid is in the name)."""
    import shutil
    shutil.rmtree(tmp_dir(), ignore_errors=True)


def trace_this_thread():
    """The interp thread, before a cell: have pydevd trace it. A thread that
    runs a cell is not paused: a KeyboardInterrupt (the frontend's interrupt)
    that ended the previous cell inside pydevd's pause loop left its state
    "suspended", and pydevd would pause the new cell's first line without
    telling the frontend. Reset it as pydevd's own resume does."""
    info = getattr(threading.current_thread(), "additional_info", None)
    if info is not None:
        try:
            from _pydevd_bundle.pydevd_constants import STATE_RUN, STATE_SUSPEND
            if info.pydev_state == STATE_SUSPEND:
                info.pydev_step_cmd = info.pydev_original_step_cmd = -1
                info.pydev_step_stop = info.pydev_smart_step_stop = None
                info.pydev_state = STATE_RUN
        except Exception:
            pass
    if sys.gettrace() is None:
        try:
            import debugpy
            debugpy.debug_this_thread()
        except Exception:
            pass


def get(shell):
    global _debugger
    if _debugger is None:
        _debugger = Debugger(shell)
    return _debugger


def _response(msg, success=True, body=None, message=None):
    r = {"type": "response", "request_seq": msg.get("seq", 0), "success": success,
         "command": msg.get("command", "")}
    if body is not None:
        r["body"] = body
    if message is not None:
        r["message"] = message
    return r


# names the variable views leave out (ipykernel's list, and the cell inputs _i, _i1...)
_HIDDEN = {"__name__", "__doc__", "__package__", "__loader__", "__spec__", "__annotations__",
           "__builtins__", "__builtin__", "__display__", "get_ipython", "debugpy", "exit", "quit",
           "In", "Out", "_oh", "_dh", "_", "__", "___"}


def _accept_variable(name):
    return not (name in _HIDDEN or re.match(r"^_\d", name) or name.startswith("_i"))


# the threads that are the kernel's own (never reported as stopped)
_OWN_THREADS = {"cellbox-control", "cellbox-debug-reader", "cellbox-debug-events"}


def _mark_own_thread(t, name):
    """A kernel thread pydevd must neither trace nor list."""
    t.name = name
    t.pydev_do_not_trace = True
    t.is_pydev_daemon_thread = True


class Debugger:
    # the control thread waits at most this for debugpy (interrupts and shutdown
    # queue behind a debug request)
    RESPONSE_TIMEOUT = 10.0

    def __init__(self, shell):
        self.shell = shell
        self.started = False
        self.endpoint = None        # (host, port) of debugpy's adapter, once listening
        self.sock = None
        self.parent = None          # header (JSON text) of the debug request being handled
        self.breakpoints = {}       # source path -> the frontend's breakpoints
        self.stopped_threads = set()
        self._lock = threading.Lock()
        self._seq = 0
        self._pending = {}          # our seq -> [threading.Event, response]
        self._events = None         # queue.Queue of DAP events, for the events thread
        self._initialized = threading.Event()
        self._attached = False

    # -- the control thread ------------------------------------------------------------------
    def handle(self, msg, header):
        ct = threading.current_thread()
        if ct.name != "cellbox-control":
            _mark_own_thread(ct, "cellbox-control")
            sys.settrace(None)
        self.parent = header
        if not isinstance(msg, dict) or not isinstance(msg.get("command"), str):
            return _response(msg if isinstance(msg, dict) else {}, False,
                             message="a debug_request needs a DAP request with a 'command'")
        cmd = msg["command"]
        if cmd == "initialize" and not self.started:
            why = self._start()
            if why:
                return _response(msg, False, message=why)
        if cmd == "disconnect" and isinstance(msg.get("arguments"), dict):
            # the debuggee is this kernel: switching the debugger off must not end
            # it, nor debugpy's adapter (JupyterLab asks for both; with them gone
            # the debugger could not be switched on again)
            msg = dict(msg, arguments=dict(msg["arguments"], terminateDebuggee=False))
        static = self.STATIC.get(cmd)
        if static:
            reply = static(self, msg)
        elif not self.started:
            reply = _response(msg, False, message="the debugger is not started (send 'initialize' first)")
        else:
            handler = self.STARTED.get(cmd)
            reply = handler(self, msg) if handler else self._forward(msg)
        if cmd == "disconnect" and self.started:
            self._stop()
        return reply

    def _start(self):
        """-> None, or why the debugger cannot start."""
        global ACTIVE
        try:
            import debugpy
        except Exception as e:
            return "debugpy is not available: %s" % e
        try:
            if self.endpoint is None:
                self.endpoint = tuple(debugpy.listen(("127.0.0.1", 0)))
                sys.settrace(None)   # debugpy traced the calling thread: this one is the kernel's
            os.makedirs(tmp_dir(), exist_ok=True)
            self._connect()
        except Exception as e:
            return "debugpy did not start: %s: %s" % (type(e).__name__, e)
        self.started = True
        self._attached = False
        ACTIVE = True
        from cellbox import _transform
        _transform.KEEP_LEADING_EMPTY_LINES = True   # breakpoints' line numbers are the cell's
        return None

    def _connect(self):
        import queue
        import socket
        self.sock = socket.create_connection(self.endpoint, timeout=10)
        self.sock.settimeout(None)
        self._initialized.clear()
        self._events = queue.Queue()
        reader = threading.Thread(target=self._read, args=(self.sock, self._events), daemon=True)
        _mark_own_thread(reader, "cellbox-debug-reader")
        reader.start()
        events = threading.Thread(target=self._publish_events, args=(self._events,), daemon=True)
        _mark_own_thread(events, "cellbox-debug-events")
        events.start()

    def _stop(self):
        global ACTIVE
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()
        self.started = False
        self.breakpoints = {}
        self.stopped_threads = set()
        ACTIVE = False
        from cellbox import _transform
        _transform.KEEP_LEADING_EMPTY_LINES = False

    def _send(self, msg):
        body = json.dumps(msg, ensure_ascii=False, allow_nan=False, default=repr).encode("utf-8")
        sock = self.sock
        if sock is None:
            raise OSError("not connected to debugpy")
        sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _request(self, command, arguments=None, timeout=None):
        """A request of the kernel's own -> debugpy's response (None: no answer)."""
        msg = {"type": "request", "command": command}
        if arguments is not None:
            msg["arguments"] = arguments
        wait = self._post(msg)
        return self._wait(wait, timeout)

    def _post(self, msg):
        with self._lock:
            self._seq += 1
            seq = self._seq
            wait = self._pending[seq] = [threading.Event(), None, seq]
        self._send(dict(msg, seq=seq))
        return wait

    def _wait(self, wait, timeout=None):
        wait[0].wait(self.RESPONSE_TIMEOUT if timeout is None else timeout)
        with self._lock:
            self._pending.pop(wait[2], None)
        return wait[1]

    def _forward(self, msg, timeout=None):
        """A frontend's request, to debugpy -> its response, in the frontend's numbering."""
        try:
            rep = self._wait(self._post(msg), timeout)
        except OSError as e:
            return _response(msg, False, message="debugpy is not reachable: %s" % e)
        if rep is None:
            return _response(msg, False, message="debugpy did not answer '%s' in time" % msg["command"])
        rep = dict(rep)
        rep["request_seq"] = msg.get("seq", 0)
        return rep

    # -- the reader and events threads -------------------------------------------------------
    def _read(self, sock, events):
        sys.settrace(None)
        buf = b""
        try:
            while True:
                sep = buf.find(b"\r\n\r\n")
                if sep < 0:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                    continue
                length = None
                for line in buf[:sep].split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length is None:   # not a DAP header: drop it
                    buf = buf[sep + 4:]
                    continue
                while len(buf) < sep + 4 + length:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                body, buf = buf[sep + 4:sep + 4 + length], buf[sep + 4 + length:]
                try:
                    msg = json.loads(body)
                except ValueError:
                    continue
                self._dispatch(msg, events)
        except OSError:
            pass
        finally:
            events.put(None)
            with self._lock:   # nobody waits for an answer that cannot come
                for wait in self._pending.values():
                    wait[0].set()

    def _dispatch(self, msg, events):
        if msg.get("type") == "response":
            with self._lock:
                wait = self._pending.get(msg.get("request_seq"))
            if wait is not None:
                wait[1] = msg
                wait[0].set()
        elif msg.get("type") == "event":
            if msg.get("event") == "initialized":
                self._initialized.set()
            events.put(msg)

    def _publish_events(self, events):
        sys.settrace(None)
        while True:
            ev = events.get()
            if ev is None:
                return
            try:
                self._on_event(ev)
            except Exception:
                pass

    def _on_event(self, ev):
        name, body = ev.get("event"), ev.get("body") or {}
        if name == "stopped":
            if body.get("allThreadsStopped"):
                rep = self._request("threads")
                for t in ((rep or {}).get("body") or {}).get("threads", []):
                    if t.get("name") not in _OWN_THREADS:
                        self.stopped_threads.add(t.get("id"))
            elif "threadId" in body:
                self.stopped_threads.add(body["threadId"])
        elif name == "continued":
            if body.get("allThreadsContinued"):
                self.stopped_threads = set()
            else:
                self.stopped_threads.discard(body.get("threadId"))
        _cellbox_c.publish("debug_event", json.dumps(ev, ensure_ascii=False, default=repr), None,
                           self.parent or "{}")

    # -- requests answered by the kernel --------------------------------------------------------
    def debug_info(self, msg):
        return _response(msg, body={
            "isStarted": self.started,
            "hashMethod": "Murmur2",
            "hashSeed": HASH_SEED,
            "tmpFilePrefix": tmp_dir() + os.sep,
            "tmpFileSuffix": ".py",
            "breakpoints": [{"source": k, "breakpoints": v} for k, v in self.breakpoints.items()],
            "stoppedThreads": sorted(self.stopped_threads, key=str),
            "richRendering": True,
            "exceptionPaths": ["Python Exceptions"],
        })

    def dump_cell(self, msg):
        code = (msg.get("arguments") or {}).get("code")
        if not isinstance(code, str):
            return _response(msg, False, message="dumpCell needs arguments.code (a string)")
        path = cell_file(code)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="surrogatepass") as f:
                f.write(code)
        except OSError as e:
            return _response(msg, False, message="cannot write %s: %s" % (path, e))
        return _response(msg, body={"sourcePath": path})

    def source(self, msg):
        path = ((msg.get("arguments") or {}).get("source") or {}).get("path")
        if isinstance(path, str) and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    return _response(msg, body={"content": f.read()})
            except OSError:
                pass
        return _response(msg, False, body={}, message="source unavailable")

    def set_breakpoints(self, msg):
        args = msg.get("arguments") or {}
        path = (args.get("source") or {}).get("path")
        if isinstance(path, str):
            self.breakpoints[path] = args.get("breakpoints") or []
            if not self.breakpoints[path]:
                del self.breakpoints[path]
        return self._forward(msg)

    def attach(self, msg):
        msg = dict(msg)
        args = msg["arguments"] = dict(msg.get("arguments") or {})
        host, port = self.endpoint
        args["connect"] = {"host": host, "port": port}
        if self._attached:
            return self._forward(msg)
        # debugpy's handshake: attach -> "initialized" event -> configurationDone
        # -> its response, then the attach response
        try:
            wait = self._post(msg)
        except OSError as e:
            return _response(msg, False, message="debugpy is not reachable: %s" % e)
        if not self._initialized.wait(self.RESPONSE_TIMEOUT):
            self._wait(wait, 0)
            return _response(msg, False, message="debugpy did not initialise")
        self._request("configurationDone")
        rep = self._wait(wait)
        if rep is None:
            return _response(msg, False, message="debugpy did not answer 'attach' in time")
        self._attached = bool(rep.get("success"))
        rep = dict(rep)
        rep["request_seq"] = msg.get("seq", 0)
        return rep

    def configuration_done(self, msg):
        return _response(msg)   # sent to debugpy during attach already

    def stack_trace(self, msg):
        reply = self._forward(msg)
        frames = (reply.get("body") or {}).get("stackFrames")
        if isinstance(frames, list):
            # the kernel's own frames sit below the cell's: leave them out
            while len(frames) > 1 and self._kernel_frame(frames[-1]):
                frames.pop()
        return reply

    @staticmethod
    def _kernel_frame(frame):
        path = (frame.get("source") or {}).get("path") or ""
        return path.startswith("<cellbox>") or "/cellbox/_kernel.py" in path

    def variables(self, msg):
        if not self.stopped_threads:
            ref = (msg.get("arguments") or {}).get("variablesReference")
            try:
                variables = self._explorer().children(ref)
            except Exception as e:
                return _response(msg, False, message="no such variables: %s" % e)
            return _response(msg, body={"variables": [v for v in variables if _accept_variable(v["name"])]})
        reply = self._forward(msg)
        body = reply.get("body") or {}
        if isinstance(body.get("variables"), list):
            body["variables"] = [v for v in body["variables"] if _accept_variable(v.get("name", ""))]
        return reply

    _explorer_obj = None

    def _explorer(self, fresh=False):
        if fresh or self._explorer_obj is None:
            if self._explorer_obj is not None:
                self._explorer_obj.untrack_all()
            self._explorer_obj = _VariableExplorer(self.shell.user_ns)
        return self._explorer_obj

    def inspect_variables(self, msg):
        try:
            variables = self._explorer(fresh=True).children(None)
        except Exception as e:
            return _response(msg, False, message="the variable explorer needs debugpy: %s" % e)
        return _response(msg, body={"variables": [v for v in variables if _accept_variable(v["name"])]})

    def rich_inspect_variables(self, msg):
        args = msg.get("arguments") or {}
        name = args.get("variableName")
        if not isinstance(name, str) or not name.isidentifier():
            ok = name in ("special variables", "function variables")
            return _response(msg, ok, body={"data": {}, "metadata": {}})
        data, md = {}, {}
        if not self.stopped_threads:
            result = self.shell._user_expressions({name: name})[name]
            if result.get("status") == "ok":
                data, md = result.get("data", {}), result.get("metadata", {})
        else:
            expr = "__import__('cellbox.display', fromlist=['format_object']).format_object(%s)" % name
            rep = self._forward({"type": "request", "command": "evaluate", "seq": msg.get("seq", 0),
                                 "arguments": {"expression": expr, "frameId": args.get("frameId"),
                                               "context": "clipboard"}})
            if rep.get("success"):
                import ast
                try:
                    data, md = ast.literal_eval(rep["body"]["result"])
                except (ValueError, SyntaxError, KeyError, TypeError):
                    data, md = {}, {}
        return _response(msg, body={"data": data, "metadata": {k: v for k, v in md.items() if k in data}})

    def copy_to_globals(self, msg):
        args = msg.get("arguments") or {}
        dst, src = args.get("dstVariableName"), args.get("srcVariableName")
        if not (isinstance(dst, str) and dst.isidentifier() and isinstance(src, str)):
            return _response(msg, False, message="copyToGlobals needs dstVariableName and srcVariableName")
        return self._forward({"type": "request", "command": "setExpression", "seq": msg.get("seq", 0),
                              "arguments": {"expression": "globals()['%s']" % dst, "value": src,
                                            "frameId": args.get("srcFrameId")}})

    def modules(self, msg):
        args = msg.get("arguments") or {}
        mods = list(sys.modules.values())
        start = args.get("startModule", 0) if isinstance(args.get("startModule"), int) else 0
        count = args.get("moduleCount") if isinstance(args.get("moduleCount"), int) and args["moduleCount"] > 0 \
            else len(mods)
        out = []
        for i, module in enumerate(mods[start:start + count], start):
            path = getattr(getattr(module, "__spec__", None), "origin", None)
            if isinstance(path, str) and path.endswith(".py"):
                out.append({"id": i, "name": module.__name__, "path": path})
        return _response(msg, body={"modules": out, "totalModules": len(mods)})

    STATIC = {"debugInfo": debug_info, "inspectVariables": inspect_variables,
              "richInspectVariables": rich_inspect_variables, "modules": modules}
    STARTED = {"dumpCell": dump_cell, "setBreakpoints": set_breakpoints, "source": source,
               "stackTrace": stack_trace, "variables": variables, "attach": attach,
               "configurationDone": configuration_done, "copyToGlobals": copy_to_globals}


class _VariableExplorer:
    """The notebook's globals as pydevd's variable tree (variablesReference
    numbers for the frontend's variables requests), as ipykernel's."""

    def __init__(self, ns):
        from debugpy.server import api  # noqa: F401  (makes pydevd importable)
        from _pydevd_bundle import pydevd_frame_utils
        from _pydevd_bundle.pydevd_suspended_frames import SuspendedFramesManager, _FramesTracker
        from _pydevd_bundle.pydevd_api import PyDevdAPI

        class _Db:
            variable_presentation = PyDevdAPI.VariablePresentation()

        class _Code:
            co_filename = cell_file("sys._getframe()")
            co_name = "<module>"

        class _Frame:
            f_code = _Code
            f_globals = f_locals = ns
            f_back = None
            f_lineno = 1
        self.manager = SuspendedFramesManager()
        self.tracker = _FramesTracker(self.manager, _Db())
        self.frame = _Frame()
        self.tracker.track("thread1", pydevd_frame_utils.create_frames_list_from_frame(self.frame))

    def untrack_all(self):
        self.tracker.untrack_all()

    def children(self, ref):
        var = self.manager.get_variable(ref or id(self.frame))
        return [x.get_var_data() for x in var.get_children_variables()]
