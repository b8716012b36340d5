"""Execution semantics of the cellbox kernel (called from interp/python.c).

What users know from IPython: one persistent ``__main__`` namespace; the
value of a final expression statement is the cell's result (Out[n], ``_``,
``__``, ``___``, ``_N``, ``In``/``Out``), a trailing ``;`` hides it; errors
carry the class name, the value and a traceback of the user's code only;
SystemExit does not end the kernel; ``%magics``, ``!shell`` and ``obj?``.

Every entry point returns the reply content as JSON text; nothing here
touches sockets (``_cellbox_c.publish`` does).
"""
import ast
import builtins
import io
import json
import linecache
import os
import sys

import _cellbox_c
from _cellbox_boot import when_imported
from cellbox import _aio

_OK = '{"status":"ok"}'
_OK_EMPTY = '{"status":"ok","_not_stored":true}'
_CO_COROUTINE = 0x0080
_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0x2000)
_SPECIALS = ("%", "!", "?")
_CLEANUP_START = (" ", "\t", "\n", "\r")


def _maybe_pasted(code):
    """Cheap test (the first two lines) for what IPython's cleanup transforms
    change: indented code and pasted >>> / ... / In [1]: sessions."""
    if code[:1] in _CLEANUP_START:
        return True
    for line in code.split("\n", 2)[:2]:
        if line.lstrip(" \t").startswith((">>>", "...")) or line.startswith("In ["):
            return True
    return False
# IPython's splitinput.line_split: leading space, escape, function part, the rest
_LINE_SPLIT = None


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, default=repr)


def _debugger_on():
    """The debugger protocol is on (cellbox._debugger, imported by its first request)."""
    d = sys.modules.get("cellbox._debugger")
    return d is not None and d.ACTIVE


def _cell_filename(count, code):
    """ipykernel's name for a cell's code, <tmp>/ipykernel_<pid>/<murmur2 of
    the code>.py (the debugger's dumpCell writes the same file): warnings and
    printed tracebacks name it as under ipykernel, and libraries that look
    for notebook cells by it know it (rich's traceback shows its code,
    line_profiler, numba's cache, executing). No file is written; linecache
    holds the source under it, and the traceback shows it as "Cell In [N]"
    (count; the latest run of the same code)."""
    from cellbox import _debugger, _traceback
    filename = _debugger.cell_file(code)
    _traceback.CELL_FILES[filename] = count
    return filename


class StdinNotImplementedError(RuntimeError):
    """input() was called but the frontend does not take input requests."""


class Shell:
    """The state of one kernel: namespace, counters, magics, comms."""

    def __init__(self):
        main = sys.modules["__main__"]
        self.user_module = main
        self.user_ns = ns = main.__dict__
        self.execution_count = 1
        self.allow_stdin = False
        self.last_result_text = None
        self.pre_execute = []      # callables run before every cell (autoreload)
        self.post_execute = []     # callables run after every cell (matplotlib)
        self._in = [""]
        self._input_now, self._recent_inputs = "", ("", "", "")   # for _i, _ii, _iii
        self._out = {}
        self._unders = ["", "", ""]   # what the displayhook last set _, __, ___ to
        ns.update({
            "__name__": "__main__",
            "__doc__": "Automatically created module for IPython interactive environment",
            "__builtins__": builtins,
            "In": self._in, "_ih": self._in,
            "Out": self._out, "_oh": self._out,
            "_": "", "__": "", "___": "",
            "_i": "", "_ii": "", "_iii": "",
            "_dh": [os.getcwd()],   # IPython's directory history (%cd, %dhist)
            "get_ipython": self.get_ipython,
            "exit": _Exiter(self), "quit": _Exiter(self),
        })
        self._hidden = dict(ns)   # IPython's user_ns_hidden: %who lists such a name once rebound
        self.payload = []
        self.comms = None      # cellbox._comm.CommManager, created on first use
        self._cell_error = self._cell_result = None
        self.ast_node_interactivity = "last_expr"
        self.call_pdb = False      # %pdb on: the debugger after each error
        self._magics = None
        self._completer = None
        self.automagic = True      # IPython's default: `pwd`, `cd /tmp` without the %
        self.autocall = 0          # %autocall: `f 1` is f(1) (1: smart, 2: full)
        self.autoawait = True      # %autoawait off: top-level await is a SyntaxError
        self._await_flag = _TOP_LEVEL_AWAIT
        self._exit_now = False

    # -- public helpers used by magics, display, comms ---------------------
    def get_ipython(self):
        # IPython's API over this shell (display_formatter, events, kernel...)
        from cellbox._ipython import get_shell
        return get_shell()

    @property
    def magics(self):
        if self._magics is None:
            from cellbox._magics import Magics
            self._magics = Magics(self)
        return self._magics

    def run_line_magic(self, name, line, _stack_depth=1):
        return self.magics.run_line(name, line)

    def run_cell_magic(self, name, line, cell):
        return self.magics.run_cell(name, line, cell)

    def system(self, cmd):
        return self.magics.system(cmd)

    def getoutput(self, cmd):
        return self.magics.getoutput(cmd)

    def show_usage(self):
        return self.magics.show_usage()

    def ev(self, expr):
        return eval(expr, self.user_ns)

    def ex(self, cmd):
        exec(cmd, self.user_ns)

    def push(self, variables):
        self.user_ns.update(variables)

    # -- execute -------------------------------------------------------------
    def run_cell(self, code, count, silent, store_history, allow_stdin, user_expressions, interrupted=False):
        # (a KeyboardInterrupt that escapes this, from the kernel's own code
        # around the cell, makes py_execute call it again as interrupted)
        self.allow_stdin = bool(allow_stdin)
        self.execution_count = count
        self.last_result_text = None
        self.payload = []
        self._cell_error = self._cell_result = None   # for post_run_cell's ExecutionResult
        if not code or code.isspace():
            return _OK_EMPTY if store_history else _OK
        if store_history:
            self._store_input(count, code)
        if _debugger_on():
            from cellbox import _debugger
            _debugger.trace_this_thread()
        filename = _cell_filename(count if store_history else "silent", code)
        status = "ok"
        err = None
        source = code   # IPython stores the raw cell when its transform fails
        _aio.request_start()
        try:
            # as IPython before each cell: "once per location" is per cell,
            # not per line number of __main__ (a warning at line 2 of one cell
            # hid any later one with the same text at line 2, and a cell run
            # again showed its warnings no more)
            self.user_ns.pop("__warningregistry__", None)
            if interrupted:   # the interrupt came while the kernel started, before this cell
                raise KeyboardInterrupt
            for fn in self.pre_execute:
                fn()
            source = self._transform(code)
            self._run_source(source, filename, silent)
        except KeyboardInterrupt as e:
            err = self._error(e, filename)
        except SystemExit as e:
            err = self._error(e, filename, system_exit=True)
        except BaseException as e:
            err = self._error(e, filename)
        finally:
            _aio.request_end()
        if err is None:
            self._post_execute()
        else:
            status = "error"
            try:
                self._post_execute()
            except BaseException:
                pass
        # as ipykernel: the expressions are evaluated only after a cell that
        # succeeded (after an error or an interrupt they are not run: {})
        if status != "ok":
            user_expressions = None
        # the source the cell became, for history_request with raw false
        parsed = source.rstrip("\n") if store_history and source.rstrip("\n") != code.rstrip("\n") else None
        if status == "ok" and not self.payload and not user_expressions and self.last_result_text is None \
                and parsed is None:
            return _OK
        reply = {"status": status}
        if err is not None:
            reply.update(err)
        if self.payload:
            reply["payload"] = self.payload
        if user_expressions:
            reply["user_expressions"] = self._user_expressions(json.loads(user_expressions))
        if self.last_result_text is not None:
            reply["_history_output"] = self.last_result_text
        if parsed is not None:
            reply["_history_source"] = parsed
        if self._exit_now:
            self._exit_now = False
            reply["_exit_after"] = True   # the kernel stops after this reply (ipykernel's exit)
        return _dumps(reply)

    def _transform(self, code):
        """IPython's transform_cell: the static transforms (magics, !, ?),
        then, for a one-line cell, the prefilter (automagic, exit/quit)."""
        source = code
        if any(ch in code for ch in _SPECIALS) or _maybe_pasted(code):
            from cellbox._transform import transform_cell   # (exact checks there)
            source = transform_cell(code)
        if "\n" not in source.rstrip("\n"):
            source = self._prefilter(source)
        return source

    def _prefilter(self, line):
        """IPython's prefilter checkers for a one-line cell, in their order:
        autocall objects (exit, quit), an assignment (`ls = 1` stays Python),
        automagic (`pwd`, `cd /tmp`, `time f()`, aliases like `ls -l`) unless
        the name is a variable, a builtin or a keyword."""
        global _LINE_SPLIT
        if _LINE_SPLIT is None:
            import re
            _LINE_SPLIT = re.compile(r"^(\s*)([,;/%]|!!?|\?\??)?\s*(%{0,2}[\w\.\*]*)(.*?$|$)", re.S)
        m = _LINE_SPLIT.match(line.rstrip("\n"))
        if not m:
            return line
        pre, esc, ifun, rest = m.groups()
        ifun, rest = ifun.strip(), rest.lstrip()
        if esc or not ifun:
            return line
        if isinstance(self.user_ns.get(ifun), _Exiter):
            if rest.startswith("("):
                return line
            call = "%s(%s);" % (ifun, rest[:-1]) if rest.endswith(";") else "%s(%s)" % (ifun, rest)
            return pre + call + "\n"
        head = ifun.split(".", 1)[0]
        if head in self.user_ns and type(self.user_ns[head]).__name__ == "Macro":
            from cellbox._magics import run_macro
            return run_macro(self, pre, ifun)
        if rest[:1] in ("=", ","):
            return line
        if not self.automagic or not head.isidentifier() or head in self.user_ns or head in builtins.__dict__:
            return self._autocall(line, pre, ifun, rest) if self.autocall else line
        import keyword
        if keyword.iskeyword(head):
            return line
        # only an unknown name gets here (a magic, or a NameError to be):
        # the magics module is loaded for it, never for a plain cell
        if self.magics.find("line", ifun) is None:
            return self._autocall(line, pre, ifun, rest) if self.autocall else line
        name, _, args = (ifun + " " + rest).partition(" ")
        return "%sget_ipython().run_line_magic(%r, %r)\n" % (pre, name.lstrip("%"), args)

    def _autocall(self, line, pre, ifun, rest):
        from cellbox._magics import autocall
        return autocall(self, line, pre, ifun, rest)

    def _store_input(self, count, code):
        if self._input_now is code and len(self._in) == count + 1:
            return   # run_cell called again after an interrupt: stored already
        ns = self.user_ns
        while len(self._in) < count:
            self._in.append("")
        self._in[count:] = [code]
        # IPython's _i, _ii, _iii are the three inputs *before* this cell
        # (this one is In[count] and _i<count>): exec(_i) reruns the previous
        # cell (with _i = this cell it ran itself until RecursionError)
        self._recent_inputs = (self._input_now,) + self._recent_inputs[:2]
        self._input_now = code
        ns["_i"], ns["_ii"], ns["_iii"] = self._recent_inputs
        ns["_i%d" % count] = code

    def run_cell_body(self, code, silent=False):
        """Run code as part of the current cell (cell magics like %%capture):
        IPython syntax allowed, the last expression is the result."""
        source = self._transform(code)
        filename = _cell_filename(self.execution_count, code)
        return self._run_source(source, filename, silent)

    def _run_source(self, source, filename, silent):
        lines = source.splitlines(True)
        if lines and not lines[-1].endswith(("\n", "\r")):
            lines[-1] += "\n"   # as IPython's: every line ends with one (rich shows the cell's end so)
        # (mtime None: linecache.checkcache keeps it, though no such file exists)
        linecache.cache[filename] = (len(source), None, lines, filename)
        flag = self._await_flag
        tree = compile(source, filename, "exec", ast.PyCF_ONLY_AST | flag, dont_inherit=True)
        body = tree.body
        mode = self.interactivity()
        if mode != "last_expr":
            return self._run_nodes(tree, filename, lines, silent, mode)
        last = None
        if body and isinstance(body[-1], ast.Expr):
            last = body.pop()
        if body:
            code = compile(tree, filename, "exec", flag, dont_inherit=True)
            self._run_code(code)
        if last is not None:
            code = compile(ast.Expression(last.value), filename, "eval", flag, dont_inherit=True)
            value = self._run_code(code)
            if not silent and not _ends_with_semicolon(lines, last):
                self.displayhook(value)
            return value
        return None

    # IPython's InteractiveShell.ast_node_interactivity: which top-level
    # statements of a cell show their value
    INTERACTIVITY = ("all", "last", "last_expr", "none", "last_expr_or_assign")

    def interactivity(self):
        mode = self.ast_node_interactivity
        ish = sys.modules.get("IPython.core.interactiveshell")
        if ish is not None:
            # `InteractiveShell.ast_node_interactivity = "all"`, the notebook idiom
            cls_mode = vars(ish.InteractiveShell).get("ast_node_interactivity")
            if isinstance(cls_mode, str) and cls_mode in self.INTERACTIVITY:
                mode = cls_mode
        return mode

    def _run_nodes(self, tree, filename, lines, silent, mode):
        body = tree.body
        if not body:
            return None
        if mode == "last_expr_or_assign":
            last = body[-1]
            target = None
            if isinstance(last, ast.Assign) and len(last.targets) == 1:
                target = last.targets[0]
            elif isinstance(last, (ast.AugAssign, ast.AnnAssign)) and last.value is not None:
                target = last.target
            if isinstance(target, ast.Name):
                show = ast.Expr(ast.Name(target.id, ast.Load()))
                body.append(ast.fix_missing_locations(ast.copy_location(show, last)))
            mode = "last_expr"
        quiet = silent or mode == "none" or _ends_with_semicolon(lines, body[-1])
        if mode == "all":
            split = 0
        elif isinstance(body[-1], ast.Expr) or mode == "last":
            split = len(body) - 1
        else:
            split = len(body)
        if split:
            mod = ast.Module(body[:split], type_ignores=[])
            self._run_code(compile(mod, filename, "exec", self._await_flag, dont_inherit=True))
        shown = [None]

        def hook(value):
            if value is not None:
                shown[0] = value
                if not quiet:
                    self.displayhook(value)
        saved = sys.displayhook
        sys.displayhook = hook
        try:
            for node in body[split:]:
                # 'single' mode: every expression statement shows its value, as at a prompt
                code = compile(ast.Interactive([node]), filename, "single", self._await_flag, dont_inherit=True)
                self._run_code(code)
        finally:
            sys.displayhook = saved
        return shown[0]

    def _run_code(self, code):
        if code.co_flags & _CO_COROUTINE:
            return _aio.run(eval(code, self.user_ns))
        return eval(code, self.user_ns)

    def debug_request(self, content, header):
        """A debug_request's content (JSON) -> the debug_reply's content
        (JSON); on the kernel's control thread (see cellbox._debugger)."""
        from cellbox import _debugger
        try:
            msg = json.loads(content)
        except ValueError:
            msg = None
        return _dumps(_debugger.get(self).handle(msg, header))

    def background(self, run):
        """Between requests (the kernel core): the asyncio loop's turn."""
        return _aio.background(run)

    def displayhook(self, value):
        """A cell's result, as IPython's DisplayHook: shown first, then kept
        in Out, _N and _, __, ___. Showing Out itself keeps nothing (it would
        hold itself); _, __ and ___ stay as they are once the user assigned
        one of them (`_ = plt.plot(...)`), or while builtins has a `_`
        (gettext)."""
        if value is None:
            return
        count = self.execution_count
        ns = self.user_ns
        self._cell_result = value
        from cellbox import display as _display
        text = _display.publish_execute_result(value, count)
        if text is not None:
            self.last_result_text = text
        if value is self._out:
            return
        names = ("_", "__", "___")
        mine = all(n not in ns or ns[n] is last for n, last in zip(names, self._unders))
        self._unders[:] = [value] + self._unders[:2]
        if mine and "_" not in builtins.__dict__:
            ns.update(zip(names, self._unders))
        ns["_%d" % count] = value
        self._out[count] = value

    def _post_execute(self):
        for fn in list(self.post_execute):
            fn()

    def _error(self, exc, filename, system_exit=False):
        from cellbox._traceback import format_exception
        etype = type(exc)
        self._cell_error = exc
        sys.last_type, sys.last_value, sys.last_traceback = etype, exc, exc.__traceback__
        if etype.__name__ == "UsageError" and etype.__module__ in ("builtins", "IPython.core.error"):
            # IPython shows a wrong use of a magic as one line on stderr, no traceback
            sys.stderr.write("UsageError: %s\n" % exc)
            sys.stderr.flush()
            return {"ename": "UsageError", "evalue": str(exc), "traceback": []}
        if isinstance(exc, SyntaxError) and exc.text is None and exc.lineno and exc.filename:
            # the compiler's errors (an `await` outside a function) carry no text
            exc.text = linecache.getline(exc.filename, exc.lineno) or None
        tb = format_exception(exc, skip_frames_of=__file__)
        content = {"ename": etype.__name__, "evalue": str(exc), "traceback": tb}
        if system_exit:
            # like IPython: report in one line (the whole traceback is %tb's),
            # keep the kernel alive, and say how to exit
            from cellbox._traceback import _exception_only
            content["evalue"] = str(exc) if exc.code is not None else ""
            content["traceback"] = ["An exception has occurred, use %tb to see the full traceback.\n",
                                    _exception_only(exc)]
        if system_exit or not self._shown_by_replaced_hook(exc):
            _cellbox_c.publish("error", _dumps(content))
        if system_exit:
            import warnings
            warnings.warn("To exit: use 'exit', 'quit', or Ctrl-D.", stacklevel=1)
        if self.call_pdb and not system_exit and not isinstance(exc, SyntaxError):
            self._auto_pdb(exc)
        return content

    def _shown_by_replaced_hook(self, exc):
        """Code that replaced IPython's showtraceback, _showtraceback or
        showsyntaxerror on get_ipython() (rich.traceback.install()) shows
        the cell's errors itself, as in ipykernel, which then publishes no
        error output. -> True when such a hook showed this one."""
        ipy = sys.modules.get("cellbox._ipython")
        facade = ipy._facade if ipy is not None else None
        if facade is None:
            return False
        hooks = facade.__dict__
        syntax = isinstance(exc, SyntaxError)
        if not (("showsyntaxerror" in hooks) if syntax else ("showtraceback" in hooks or "_showtraceback" in hooks)):
            return False
        # the traceback from the cell's caller, as IPython's from its run_code
        # (a hook skips that frame: running_compiled_code=True)
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None and tb.tb_next.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next
        facade._reporting = (type(exc), exc, tb)
        try:
            if syntax:
                facade.showsyntaxerror()
            else:
                facade.showtraceback(running_compiled_code=True)
        except Exception:
            return False   # the kernel's own error output, then
        finally:
            facade._reporting = None
        return True

    def _auto_pdb(self, exc):
        """%pdb on: IPython's post-mortem debugger on the error just shown,
        through input requests; none when the frontend takes no input (an
        error must never leave the cell waiting)."""
        if not self.allow_stdin:
            return
        try:
            self.magics.post_mortem(exc.__traceback__)
        except KeyboardInterrupt:
            pass
        except Exception as e:
            sys.stderr.write("%%pdb: the debugger failed: %s: %s\n" % (type(e).__name__, e))

    def _user_expressions(self, exprs):
        from cellbox import display as _display
        out = {}
        for key, expr in exprs.items():
            try:
                value = eval(expr, self.user_ns)
                data, md = _display.format_object(value)
                out[key] = {"status": "ok", "data": data, "metadata": md}
            except BaseException as e:
                from cellbox._traceback import format_exception
                out[key] = {"status": "error", "ename": type(e).__name__, "evalue": str(e),
                            "traceback": format_exception(e, skip_frames_of=__file__)}
        return out

    # -- other requests --------------------------------------------------------
    @property
    def completer(self):
        if self._completer is None:
            from cellbox._complete import Completer
            self._completer = Completer(self)
        return self._completer

    def complete_request(self, content):
        c = json.loads(content)
        return _dumps(self.completer.complete(c.get("code", ""), c.get("cursor_pos")))

    def inspect_request(self, content):
        c = json.loads(content)
        from cellbox._inspect import inspect_reply
        return _dumps(inspect_reply(self, c.get("code", ""), c.get("cursor_pos"), c.get("detail_level", 0)))

    def is_complete_request(self, content):
        c = json.loads(content)
        from cellbox._complete import is_complete
        return _dumps(is_complete(c.get("code", "")))

    def comm_info_request(self, content):
        c = json.loads(content)
        comms = {}
        if self.comms is not None:
            comms = self.comms.info(c.get("target_name"))
        return _dumps({"status": "ok", "comms": comms})

    def comm_message(self, msg_type, msg, buffers):
        from cellbox._comm import get_comm_manager
        _aio.request_start()   # handlers run inside the loop, as in ipykernel
        try:
            get_comm_manager().handle(msg_type, json.loads(msg), buffers)
        finally:
            _aio.request_end()

    def shutdown(self, restart):
        d = sys.modules.get("cellbox._debugger")
        if d is not None:
            # the cells' files the debugger wrote; first, as the atexit
            # functions that follow may outlast the core's grace period
            # (debugpy's do, while its adapter lives)
            d.cleanup()
        try:
            import atexit
            atexit._run_exitfuncs()
        except BaseException:
            pass
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except BaseException:
                pass


class _Exiter:
    """exit / quit in a cell ask the frontend to close (IPython's ask_exit)."""

    def __init__(self, shell):
        self._shell = shell

    def __repr__(self):
        return "Use exit() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, keep_kernel=False):
        """ipykernel's ZMQExitAutocall: the ask_exit payload, and unless
        keep_kernel the kernel stops once the cell's reply is sent."""
        self._shell.payload.append({"source": "ask_exit", "keepkernel": bool(keep_kernel)})
        self._shell._exit_now = not keep_kernel


def _ends_with_semicolon(lines, node):
    """True when the text after the last expression is ';' (plus comments)."""
    end_line, end_col = node.end_lineno, node.end_col_offset
    rest = lines[end_line - 1][end_col:] if end_line - 1 < len(lines) else ""
    rest += "".join(lines[end_line:])
    for line in rest.splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            return s.startswith(";")
    return False


# -- process-wide setup ---------------------------------------------------------

def _input(prompt=""):
    """builtins.input through the Jupyter stdin channel."""
    return _read_line(prompt, False)


def _getpass(prompt="Password: ", stream=None):
    return _read_line(prompt, True)


def _no_stdin(password):
    # ipykernel's messages: getpass() says so (the user called getpass)
    return StdinNotImplementedError("%s was called, but this frontend does not support input requests."
                                    % ("getpass" if password else "raw_input"))


def _read_line(prompt, password):
    shell = _shell
    if shell is not None and not shell.allow_stdin:
        raise _no_stdin(password)
    try:
        status, value = _cellbox_c.input(str(prompt), bool(password))
    except KeyboardInterrupt:
        raise KeyboardInterrupt("Interrupted by user") from None   # ipykernel's words
    if status == _cellbox_c.INPUT_OK:
        if value == "\x04":
            # EOF: what jupyter_client and jupyter console answer at the end
            # of their input (Ctrl-D), as ipykernel reads it (pdb quits, a
            # loop over input() ends) instead of a line holding U+0004
            raise EOFError
        return value
    if status == _cellbox_c.INPUT_NOT_ALLOWED:
        raise _no_stdin(password)
    raise EOFError("no input: the kernel is shutting down")


class _Stdin(io.TextIOBase):
    """sys.stdin: lines come from the frontend's input_reply. Without a
    frontend that answers (allow_stdin false: nbclient, papermill, cellbox
    run) it is at its end, as ipykernel's is: code that reads it gets ''
    (input() and getpass() fail with StdinNotImplementedError)."""

    @property
    def encoding(self):
        return "utf-8"

    @property
    def name(self):
        return "<stdin>"

    def readline(self, size=-1):
        try:
            return _read_line("", False) + "\n"
        except (EOFError, StdinNotImplementedError):
            return ""   # a file's end: for line in sys.stdin ends

    def read(self, size=-1):
        return self.readline()

    def isatty(self):
        return False

    def readable(self):
        return True

    def fileno(self):
        return 0


def _display_builtin(*objs, **kwargs):
    """display(*objs, include=None, exclude=None, metadata=None, transient=None,
    display_id=None, raw=False, clear=False): show objects as rich output."""
    from cellbox.display import display
    return display(*objs, **kwargs)


_display_builtin.__name__ = "display"

_builtin_print = builtins.print


def _child_print(*args, sep=" ", end="\n", file=None, flush=False):
    if file is None:
        file = sys.stdout
    if type(file) is not _cellbox_c.OutStream or not isinstance(sep, (str, type(None))) \
            or not isinstance(end, (str, type(None))):
        return _builtin_print(*args, sep=sep, end=end, file=file, flush=flush)
    file.write((" " if sep is None else sep).join([str(a) for a in args]) + ("\n" if end is None else end))


_child_print.__name__ = _child_print.__qualname__ = "print"
_child_print.__doc__ = _builtin_print.__doc__


def _forked_child():
    """In a process forked from the kernel (multiprocessing's workers), each
    write to sys.stdout / sys.stderr goes to the kernel at once (interp/python.c),
    and print() writes its pieces separately: there it writes its whole text
    at once, so that the lines of several children do not interleave mid-line."""
    if builtins.print is _builtin_print:
        builtins.print = _child_print


_shell = None


def start():
    """Called once by the kernel at startup; returns the Shell."""
    global _shell
    sys.stdout = _cellbox_c.OutStream(1)
    sys.stderr = _cellbox_c.OutStream(2)
    sys.stdin = _Stdin()
    sys.displayhook = lambda value: _shell.displayhook(value) if _shell else None
    builtins.input = _input
    os._exit = _cellbox_c._exit   # publishes what was printed, then exits
    os.register_at_fork(after_in_child=_forked_child)
    builtins.display = _display_builtin
    when_imported("getpass", lambda m: setattr(m, "getpass", _getpass))
    _aio.install()   # the asyncio loop, once asyncio is imported
    # threading takes the thread that first imports it for the main thread:
    # make that this one, before the kernel's control thread runs Python
    # (the debugger) and before any library's thread could
    import threading  # noqa: F401
    # what every ipykernel process has: its shell's environment for
    # subprocesses (no pagers, colours) and the recursion limit jedi sets
    # when IPython imports it at start
    os.environ.update(TERM="xterm-color", CLICOLOR="1", PAGER="cat", GIT_PAGER="cat")
    if sys.getrecursionlimit() < 3000:
        sys.setrecursionlimit(3000)
    # matplotlib: the inline backend is the default, set when matplotlib is
    # imported (not through MPLBACKEND: subprocesses would inherit it)
    when_imported("matplotlib", _matplotlib_imported)
    from cellbox import _hooks
    _hooks.install()   # IPython.display, get_ipython, comm, ipykernel.comm adapters
    # the working folder is where the kernel started (jupyter sets it)
    if "" not in sys.path:
        sys.path.insert(0, "")
    _shell = Shell()
    builtins.get_ipython = _shell.get_ipython   # as in IPython (pandas looks there)
    # what every IPython shell sets, ipykernel's included, and libraries test
    # to know they run in IPython (pandas, altair) or interactively (the
    # prompts: "so that scripts can decide if they are running interactively")
    builtins.__IPYTHON__ = True
    sys.ps1, sys.ps2, sys.ps3 = "In : ", "...: ", "Out: "
    return _shell


def _matplotlib_imported(mpl):
    from cellbox import _inline
    _inline.activate(_shell, mpl)
