"""IPython compatibility: what IPython-aware code finds in the cellbox kernel.

Libraries ask ``get_ipython()`` for the display formatter, the display
publisher, events, the kernel's comm manager and the config, and detect a
notebook kernel the ways they detect ipykernel's shell, which the facade
answers alike: its class (``ZMQInteractiveShell``, from module
``ipykernel.zmqshell``: rich tests the name, pandas looks for "zmq" in
``str(type(ip))``), ``'IPKernelApp' in ip.config`` (tqdm.auto; with the
``connection_file`` ipykernel has there), ``ip.kernel`` (pandas,
ipywidgets) and ``ip.has_trait('kernel')``. The kernel also sets the
builtin ``__IPYTHON__`` and ``sys.ps1`` (cellbox._kernel) and has IPython in
sys.modules before tqdm.autonotebook looks there (cellbox._hooks).
ZMQInteractiveShell here is a thin facade over cellbox's Shell (anything it
does not define is the Shell's), created on first use.

When the user imports IPython, the hooks of cellbox._hooks (installed at
kernel start, costing nothing until then) point IPython at this kernel:

- IPython.core.display_functions: display, update_display, clear_output,
  publish_display_data and DisplayHandle are cellbox.display's, so
  IPython.display's classes and functions publish through the kernel with
  the content ipykernel sends;
- IPython.core.getipython.get_ipython returns the facade;
- IPython.core.display.set_matplotlib_formats / set_matplotlib_close and
  matplotlib_inline's functions of the same names configure cellbox's
  inline backend.

Nothing here imports IPython.
"""
import sys

__all__ = ["get_shell", "get_kernel", "show_exception"]


class _Config(dict):
    """get_ipython().config: a dict of sections (traitlets' Config API subset)."""

    def __missing__(self, key):
        if key[:1].isupper():
            v = self[key] = _Config()
            return v
        raise KeyError(key)

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class EventManager:
    """IPython's events: pre_execute, pre_run_cell, post_execute, post_run_cell."""

    _EVENTS = ("pre_execute", "pre_run_cell", "post_execute", "post_run_cell", "shell_initialized")

    def __init__(self, shell):
        self._shell = shell
        self.callbacks = {e: [] for e in self._EVENTS}
        self._wrappers = {}

    def register(self, event, function):
        if event not in self.callbacks:
            raise KeyError("Unknown event %s" % event)
        if not callable(function):
            raise TypeError("Need a callable, got %r" % function)
        if function in self.callbacks[event]:
            return
        self.callbacks[event].append(function)
        hooks = self._shell.pre_execute if event.startswith("pre_") else self._shell.post_execute
        if event in ("pre_execute", "post_execute"):
            wrapper = function
        elif event == "pre_run_cell":
            def wrapper(fn=function):
                fn(_ExecutionInfo(self._shell))
        elif event == "post_run_cell":
            def wrapper(fn=function):
                fn(_ExecutionResult(self._shell))
        else:
            return
        self._wrappers[(event, function)] = wrapper
        hooks.append(wrapper)

    def unregister(self, event, function):
        if function not in self.callbacks.get(event, ()):
            raise ValueError("Function {!r} is not registered as a {} callback".format(function, event))
        self.callbacks[event].remove(function)
        wrapper = self._wrappers.pop((event, function), None)
        for hooks in (self._shell.pre_execute, self._shell.post_execute):
            if wrapper in hooks:
                hooks.remove(wrapper)

    def trigger(self, event, *args, **kwargs):
        for fn in list(self.callbacks.get(event, ())):
            try:
                fn(*args, **kwargs)
            except Exception:
                show_exception()


class _ExecutionInfo:
    def __init__(self, shell):
        inputs = getattr(shell, "_in", None) or [""]
        self.raw_cell = inputs[-1]
        self.store_history = True
        self.silent = False
        self.shell_futures = True
        self.cell_id = None


class _ExecutionResult:
    def __init__(self, shell):
        self.execution_count = shell.execution_count
        self.info = _ExecutionInfo(shell)
        self.error_before_exec = None
        self.error_in_exec = getattr(shell, "_cell_error", None)
        self.result = getattr(shell, "_cell_result", None)

    @property
    def success(self):
        return self.error_before_exec is None and self.error_in_exec is None

    def raise_error(self):
        if self.error_in_exec is not None:
            raise self.error_in_exec


class DisplayPublisher:
    """get_ipython().display_pub. session, pub_socket and parent_header are
    ipykernel's ZMQDisplayPublisher's: jupyter_client's execute_interactive,
    run inside a kernel, sends a nested kernel's rich output through them."""

    @property
    def session(self):
        return get_kernel().session

    @property
    def pub_socket(self):
        return _IOPUB

    @property
    def parent_header(self):
        return _current_parent() or {}

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        from cellbox.display import publish_display_data
        publish_display_data(data, metadata, transient=transient, update=update)

    def clear_output(self, wait=False):
        from cellbox.display import clear_output
        clear_output(wait)


class _Socket:
    """Stands for one of ipykernel's sockets: something to pass to
    kernel.session.send(). Only IOPub can be sent to from kernel code."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "<cellbox %s socket>" % self.name


class Session:
    """get_ipython().kernel.session: jupyter_client's Session.msg() and
    Session.send() for messages kernel code publishes itself on
    kernel.iopub_socket (display_data, update_display_data, execute_result,
    stream, clear_output, comm messages...). The kernel signs and sends them
    with the request being handled as their parent, as ipykernel does when
    code passes parent=get_ipython().parent_header."""

    def __init__(self):
        import uuid
        self.session = str(uuid.uuid4())
        self.username = "username"
        self.debug = False

    def msg_header(self, msg_type):
        import datetime
        import uuid
        return {"msg_id": str(uuid.uuid4()), "msg_type": msg_type, "username": self.username,
                "session": self.session, "date": datetime.datetime.now(datetime.timezone.utc),
                "version": "5.3"}

    def msg(self, msg_type, content=None, parent=None, header=None, metadata=None):
        parent = parent or {}
        return {"header": header if header is not None else self.msg_header(msg_type),
                "msg_id": (header or {}).get("msg_id") if header is not None else None,
                "msg_type": msg_type,
                "parent_header": _extract_header(parent),
                "content": {} if content is None else content,
                "metadata": dict(metadata or {})}

    def send(self, stream, msg_or_type, content=None, parent=None, ident=None, buffers=None, track=False,
             header=None, metadata=None):
        if stream is None:
            return None
        if stream is not _IOPUB:
            raise ValueError("cellbox: kernel.session.send() publishes on kernel.iopub_socket only, not on %r"
                             % (stream,))
        if isinstance(msg_or_type, dict):
            msg = msg_or_type
            msg_type = msg.get("header", {}).get("msg_type") or msg.get("msg_type")
            content = msg.get("content", {})
            parent_h = msg.get("parent_header") or {}
        else:
            msg = self.msg(msg_or_type, content, parent, header, metadata)
            msg_type = msg_or_type
            msg["msg_id"] = msg["header"]["msg_id"]
            parent_h = _extract_header(parent)
            msg["parent_header"] = parent_h
        if not isinstance(msg_type, str) or not msg_type:
            raise ValueError("cellbox: a message needs a msg_type")
        import _cellbox_c
        from cellbox._comm import _buffers, _dumps
        bufs = _buffers(buffers)
        current = _current_parent()
        text = _dumps({} if content is None else content)
        if current and parent_h and parent_h.get("msg_id") == current["header"].get("msg_id"):
            _cellbox_c.publish(msg_type, text, bufs)
        else:   # no parent, or another request's: as the code says
            _cellbox_c.publish(msg_type, text, bufs, _dumps(parent_h))
        if bufs:
            msg["buffers"] = bufs
        return msg


_IOPUB = _Socket("iopub")


def _extract_header(msg_or_header):
    """jupyter_client.session.extract_header: a message's header, a header,
    or {} for nothing."""
    if not msg_or_header:
        return {}
    if "header" in msg_or_header:
        h = msg_or_header["header"]
    elif "msg_id" in msg_or_header:
        h = msg_or_header
    else:
        raise KeyError("header")
    return dict(h)


class Kernel:
    """get_ipython().kernel: what libraries use of ipykernel's Kernel."""

    implementation = "cellbox"
    language = "python"
    iopub_socket = _IOPUB

    def __init__(self, shell):
        self.shell = shell
        self.session = Session()

    @property
    def comm_manager(self):
        from cellbox._comm import get_comm_manager
        return get_comm_manager()

    def get_parent(self, channel="shell"):
        return _current_parent() or {}

    @property
    def _parent_header(self):
        # ipywidgets' Output widget routes output by the request's msg_id; it
        # checks hasattr() first, so an unknown parent must raise AttributeError
        parent = _current_parent()
        if parent is None:
            raise AttributeError("_parent_header")
        return parent


# The request being handled, as ipykernel's kernel.get_parent() gives it
# ({"header": {...}}): known while a comm message from the frontend is being
# handled (cellbox._comm sets it); for cells, when the C side offers it.
_comm_parent = None


def _current_parent():
    if _comm_parent is not None:
        return _comm_parent
    import _cellbox_c
    get = getattr(_cellbox_c, "parent_header", None)   # the header's JSON text, or None
    if get is not None:
        import json
        text = get()
        if text:
            return {"header": json.loads(text)}
    return None


class HistoryManager:
    """get_ipython().history_manager: IPython's HistoryManager reading API.
    This session's inputs come from the shell's In list (the running cell
    included, as in IPython) with session number 0; earlier sessions, tails
    and searches from cellbox's history store (hist_file, ':memory:' when
    the kernel keeps none, as `cellbox run` and nbclient's kernels do)."""

    enabled = True
    db_log_output = True

    def __init__(self, facade):
        self._facade = facade

    @property
    def hist_file(self):
        import _cellbox_c
        f = _cellbox_c.history_file()
        return f if f else ":memory:"

    @property
    def session_number(self):
        import _cellbox_c
        return _cellbox_c.history_session()

    @property
    def input_hist_raw(self):
        return self._facade._shell._in

    @property
    def input_hist_parsed(self):
        from cellbox._magics import Magics
        return [Magics._source(src, False) if src else src for src in self._facade._shell._in]

    @property
    def output_hist(self):
        return self._facade._shell._out

    def _query(self, **request):
        import json
        import _cellbox_c
        reply = json.loads(_cellbox_c.history_query(json.dumps(request)))
        return [tuple(e[:2]) + ((tuple(e[2]) if isinstance(e[2], list) else e[2]),) for e in reply.get("history", [])]

    @staticmethod
    def _cooked(rows, raw):
        if raw:
            return rows
        from cellbox._magics import Magics
        out = []
        for s, n, v in rows:
            if isinstance(v, tuple):
                out.append((s, n, (Magics._source(v[0], False), v[1])))
            else:
                out.append((s, n, Magics._source(v, False)))
        return out

    def _get_range_session(self, start=1, stop=None, raw=True, output=False):
        hist = self.input_hist_raw if raw else self.input_hist_parsed
        n = len(hist)
        if start < 0:
            start += n
        if not stop or stop > n:
            stop = n
        elif stop < 0:
            stop += n
        outs = {}
        if output:
            outs = {line: v[1] for _, line, v in self._query(hist_access_type="range", session=0, start=start,
                                                              stop=stop, output=True)}
        for i in range(start, stop):
            yield (0, i, (hist[i], outs.get(i))) if output else (0, i, hist[i])

    def get_range(self, session=0, start=1, stop=None, raw=True, output=False):
        if session == 0 or session == self.session_number:
            return self._get_range_session(start, stop, raw, output)
        rows = self._query(hist_access_type="range", session=session, start=start,
                           stop=-1 if stop is None else stop, output=output)
        return iter(self._cooked(rows, raw))

    def get_range_by_str(self, rangestr, raw=True, output=False):
        from cellbox._magics import _hist_ranges
        for sess, s, e in _hist_ranges(rangestr):
            yield from self.get_range(sess, s, e, raw=raw, output=output)

    def get_tail(self, n=10, raw=True, output=False, include_latest=False):
        # the store holds the cells that finished; IPython's also holds the
        # running one, which include_latest=False drops again
        rows = self._query(hist_access_type="tail", n=n - 1 if include_latest else n, output=output)
        if include_latest and n > 0:
            src = self.input_hist_raw[-1] if self.input_hist_raw else ""
            rows.append((self.session_number, len(self.input_hist_raw) - 1, (src, None) if output else src))
        return iter(self._cooked(rows[-n:] if n > 0 else [], raw))

    def search(self, pattern="*", raw=True, search_raw=True, output=False, n=None, unique=False):
        import fnmatch
        rows = self._query(hist_access_type="search", pattern=pattern, output=output, unique=unique)
        # IPython's store also holds the running cell: it can match itself
        ins = self.input_hist_raw
        if len(ins) > 1 and fnmatch.fnmatchcase(ins[-1], pattern):
            src = ins[-1]
            if unique:
                rows = [r for r in rows if (r[2][0] if output else r[2]) != src]
            rows.append((self.session_number, len(ins) - 1, (src, None) if output else src))
        if n is not None:
            rows = rows[-n:] if n > 0 else []
        return iter(self._cooked(rows, raw))

    def get_session_info(self, session=0):
        return (self.session_number if session == 0 else session, None, None, None, "")

    def writeout_cache(self, conn=None):
        pass

    def store_inputs(self, line_num, source, source_raw=None):
        pass

    def store_output(self, line_num):
        pass


class MagicsManager:
    """get_ipython().magics_manager: IPython's registry of magics over
    cellbox's (register, register_function, magics, lsmagic, registry)."""

    def __init__(self, facade):
        self._facade = facade
        self.registry = {}

    @property
    def magics(self):
        return self._facade._shell.magics.table()

    def lsmagic(self):
        return self.magics

    def register(self, *objs):
        """IPython's Magics subclasses (instantiated with the shell) or
        instances: every magic in their ``magics`` table is registered."""
        for m in objs:
            if isinstance(m, type):
                m = m(shell=self._facade)
            tables = getattr(m, "magics", None)
            if not isinstance(tables, dict):
                raise ValueError("%r is not a Magics class or instance (no 'magics' table)" % (m,))
            self.registry[type(m).__name__] = m
            for kind, tab in tables.items():
                for name, fn in tab.items():
                    if isinstance(fn, str):
                        fn = getattr(m, fn)
                    self._facade._shell.magics.register(kind, name, fn)

    def register_function(self, func, magic_kind="line", magic_name=None):
        self._facade._shell.magics.register(magic_kind, magic_name or func.__name__, func)

    def register_alias(self, alias_name, magic_name, magic_kind="line", magic_params=None):
        magics = self._facade._shell.magics
        kinds = ("line", "cell") if magic_kind == "line_cell" else (magic_kind,)
        for kind in kinds:
            target = magics.find(kind, magic_name)
            if target is None:
                raise ValueError("%s magic %r does not exist" % (kind, magic_name))

            def alias(*args, _target=target, **kwargs):
                if magic_params:
                    args = ((magic_params + " " + args[0]).strip(),) + args[1:]
                return _target(*args, **kwargs)
            alias.__doc__ = "Alias for `%s%s`." % ("%" if kind == "line" else "%%", magic_name)
            alias._cellbox_alias = (magic_name, kind, magic_params)
            magics.register(kind, alias_name, alias)


class ExtensionManager:
    """get_ipython().extension_manager: load_ipython_extension(ip) /
    unload_ipython_extension(ip) of a module, with IPython's return codes."""

    def __init__(self, facade):
        self.shell = facade
        self.loaded = set()

    def load_extension(self, module_str):
        if module_str in self.loaded:
            return "already loaded"
        if module_str in ("autoreload", "IPython.extensions.autoreload"):
            # cellbox's own autoreload (IPython's needs a real InteractiveShell)
            from cellbox._autoreload import install
            install(self.shell._shell)
            self.loaded.add(module_str)
            return None
        import importlib
        mod = importlib.import_module(module_str)
        load = getattr(mod, "load_ipython_extension", None)
        if load is None:
            return "no load function"
        load(self.shell)
        self.loaded.add(module_str)
        return None

    def unload_extension(self, module_str):
        if module_str not in self.loaded:
            return "not loaded"
        mod = sys.modules.get(module_str)
        unload = getattr(mod, "unload_ipython_extension", None)
        if unload is None:
            return "no unload function"
        unload(self.shell)
        self.loaded.discard(module_str)
        return None

    def reload_extension(self, module_str):
        mod = sys.modules.get(module_str)
        if module_str in self.loaded and mod is not None:
            if self.unload_extension(module_str) is None:
                import importlib
                mod = importlib.reload(mod)
                load = getattr(mod, "load_ipython_extension", None)
                if load is not None:
                    load(self.shell)
                    self.loaded.add(module_str)
        else:
            self.load_extension(module_str)


class _Hooks:
    """get_ipython().hooks: what IPython.core.page and friends call."""

    def __init__(self, facade):
        self._facade = facade

    def show_in_pager(self, data, start=0, screen_lines=0, **kwargs):
        # ipykernel's pager: a "page" payload on the execute_reply
        self._facade.payload_manager.write_payload(
            {"source": "page", "data": data if isinstance(data, dict) else {"text/plain": str(data)},
             "start": max(0, int(start or 0))})


class _PayloadManager:
    def __init__(self, facade):
        self._facade = facade

    def write_payload(self, data, single=True):
        payload = self._facade._shell.payload
        if single:
            payload[:] = [p for p in payload if p.get("source") != data.get("source")]
        payload.append(data)

    def read_payload(self):
        return self._facade._shell.payload

    def clear_payload(self):
        del self._facade._shell.payload[:]


class ZMQInteractiveShell:
    """The object get_ipython() returns in the cellbox kernel."""

    def __init__(self, shell):
        object.__setattr__(self, "_shell", shell)
        from cellbox.display import get_formatter
        self.display_formatter = get_formatter()
        self.display_pub = DisplayPublisher()
        self.events = EventManager(shell)
        self.kernel = Kernel(self)
        self.config = _Config(IPKernelApp=_Config())
        import _cellbox_c
        connection_file = _cellbox_c.connection_file()
        if connection_file:   # as ipykernel's, from its command line
            self.config.IPKernelApp["connection_file"] = connection_file
        self.parent = None
        self.configurables = []
        self.colors = "Neutral"   # IPython 8's scheme name (sympy's init_printing reads it)
        self.magics_manager = MagicsManager(self)
        self.extension_manager = ExtensionManager(self)
        self.hooks = _Hooks(self)
        self.payload_manager = _PayloadManager(self)
        self.history_manager = HistoryManager(self)

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "_shell"), name)

    # traitlets' HasTraits API for the traits of ipykernel's shell that the
    # facade has (`ip.has_trait('kernel')` tells a kernel from a terminal)
    _TRAITS = frozenset((
        "_post_execute", "alias_manager", "ast_node_interactivity", "ast_transformers", "autoawait", "autocall",
        "autoindent", "automagic", "banner1", "banner2", "builtin_trap", "cache_size", "color_info", "colors",
        "compiler_class", "config", "data_pub_class", "debug", "disable_failing_post_execute", "display_formatter",
        "display_page", "display_pub_class", "display_trap", "displayhook_class", "enable_html_pager",
        "execution_count", "exit_now", "exiter", "extension_manager", "filename", "history_length",
        "history_load_length", "history_manager", "input_transformer_manager", "input_transformers_post",
        "ipython_dir", "kernel", "last_execution_result", "last_execution_succeeded", "log", "logappend", "logfile",
        "logstart", "loop_runner", "magics_manager", "object_info_string_level", "parent", "parent_header",
        "payload_manager", "pdb", "prefilter_manager", "profile_dir", "quiet", "readline_use", "separate_in",
        "separate_out", "separate_out2", "show_rewritten_input", "sphinxify_docstring", "warn_venv",
        "wildcards_case_sensitive", "xmode"))

    def has_trait(self, name):
        return name in self._TRAITS and hasattr(self, name)

    def trait_names(self):
        return [n for n in sorted(self._TRAITS) if hasattr(self, n)]

    @property
    def comm_manager(self):
        return self.kernel.comm_manager

    @property
    def db(self):
        """IPython's profile database (pickleshare) in IPython's profile
        folder ($IPYTHONDIR or ~/.ipython, profile_default/db): what %store
        keeps, shared with IPython and ipykernel."""
        db = self.__dict__.get("_db")
        if db is None:
            import os
            from pickleshare import PickleShareDB
            base = os.environ.get("IPYTHONDIR") or os.path.join(os.path.expanduser("~"), ".ipython")
            db = PickleShareDB(os.path.join(base, "profile_default", "db"))
            object.__setattr__(self, "_db", db)
        return db

    @property
    def parent_header(self):
        """The request being handled ({"header": {...}}), as ipykernel's
        shell.parent_header; {} when there is none."""
        return _current_parent() or {}

    @property
    def user_ns(self):
        return self._shell.user_ns

    @property
    def user_global_ns(self):
        return self._shell.user_ns

    @property
    def user_ns_hidden(self):
        return {n: self._shell.user_ns.get(n) for n in self._shell._hidden}

    # -- magics (IPython's API) ---------------------------------------------------------
    def register_magic_function(self, func, magic_kind="line", magic_name=None):
        self.magics_manager.register_function(func, magic_kind, magic_name)

    def register_magics(self, *objs):
        self.magics_manager.register(*objs)

    def find_magic(self, magic_name, magic_kind="line"):
        return self._shell.magics.find(magic_kind, magic_name)

    def find_line_magic(self, magic_name):
        return self._shell.magics.find("line", magic_name)

    def find_cell_magic(self, magic_name):
        return self._shell.magics.find("cell", magic_name)

    def set_next_input(self, s, replace=False):
        self.payload_manager.write_payload({"source": "set_next_input", "text": s, "replace": bool(replace)})

    def run_cell(self, raw_cell, store_history=False, silent=False, shell_futures=True, cell_id=None):
        """IPython's run_cell from inside a cell: the code runs in the user
        namespace (IPython syntax allowed), an error is shown and kept in the
        returned ExecutionResult, never raised."""
        result = _ExecutionResult(self._shell)
        result.info.raw_cell = raw_cell
        result.info.store_history, result.info.silent = store_history, silent
        try:
            result.result = self._shell.run_cell_body(raw_cell, silent=silent)
        except (Exception, KeyboardInterrupt, SystemExit) as e:
            result.error_in_exec = e
            show_exception(e)
        return result

    def get_ipython(self):
        return self

    # the cell's error while the kernel reports it through a showtraceback
    # that code replaced: (type, value, traceback from the cell's caller)
    _reporting = None

    def _get_exc_info(self, exc_tuple=None):
        """IPython's: the exception to show (given, being reported or
        handled, else the last one)."""
        if exc_tuple is None and self._reporting is not None:
            return self._reporting
        etype, value, tb = exc_tuple if exc_tuple is not None else sys.exc_info()
        if etype is None and hasattr(sys, "last_type"):
            etype, value, tb = sys.last_type, sys.last_value, sys.last_traceback
        if etype is None:
            raise ValueError("No exception to find")
        sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
        return etype, value, tb

    def showtraceback(self, exc_tuple=None, filename=None, tb_offset=None, exception_only=False,
                      running_compiled_code=False):
        """The error output, as ipykernel's; when code replaced IPython's
        _showtraceback hook (rich.traceback.install() does), that hook is
        called with the formatted traceback instead, as IPython does."""
        hook = self.__dict__.get("_showtraceback")
        if hook is None:
            show_exception(exc_tuple[1] if exc_tuple else (self._reporting[1] if self._reporting else None))
            return
        try:
            etype, value, tb = self._get_exc_info(exc_tuple)
        except ValueError:
            sys.stderr.write("No traceback available to show.\n")
            return
        from cellbox._traceback import format_exception
        hook(etype, value, format_exception(value))

    def _showtraceback(self, etype, evalue, stb):
        """IPython's hook that shows a formatted traceback: the error output."""
        import _cellbox_c
        from cellbox.display import dumps
        _cellbox_c.publish("error", dumps({"ename": etype.__name__, "evalue": str(evalue), "traceback": stb}))

    def enable_matplotlib(self, gui=None):
        from cellbox import _inline
        _inline.enable(self._shell)
        return "inline", "module://cellbox._inline"

    def enable_pylab(self, gui=None, import_all=True, welcome_message=False):
        self.enable_matplotlib(gui)
        exec("import numpy\nimport matplotlib\nfrom matplotlib import pylab, mlab, pyplot\n"
             "np = numpy\nplt = pyplot\n" + ("from numpy import *\nfrom matplotlib.pyplot import *\n"
                                            if import_all else ""), self._shell.user_ns)

    def register_post_execute(self, func):
        self.events.register("post_execute", func)


# its repr and type are ipykernel's: `<ipykernel.zmqshell.ZMQInteractiveShell at 0x...>`
ZMQInteractiveShell.__module__ = "ipykernel.zmqshell"

_facade = None


def get_shell():
    """The ZMQInteractiveShell facade of the running kernel (None outside it)."""
    global _facade
    if _facade is None:
        from cellbox import _kernel
        if _kernel._shell is None:
            return None
        _facade = ZMQInteractiveShell(_kernel._shell)
    return _facade


def get_kernel():
    shell = get_shell()
    return shell.kernel if shell is not None else None


def show_exception(exc=None):
    """Publish the exception being handled (or exc) as an error output, the
    way ipykernel's showtraceback does; the cell itself goes on."""
    import _cellbox_c
    from cellbox._traceback import format_exception
    from cellbox.display import dumps
    if exc is None:
        exc = sys.exc_info()[1]
    if exc is None:
        return
    content = {"ename": type(exc).__name__, "evalue": str(exc), "traceback": format_exception(exc)}
    _cellbox_c.publish("error", dumps(content))


# -- adapters (installed by install(); run when the user imports IPython) --------------

def patch_display_functions(mod):
    from cellbox import display as d
    mod.display = d.display
    mod.update_display = d.update_display
    mod.clear_output = d.clear_output
    mod.publish_display_data = d.publish_display_data
    mod.DisplayHandle = d.DisplayHandle


def get_ipython():
    """Get the global InteractiveShell instance.

    Returns None if no InteractiveShell instance is registered."""
    return get_shell()


get_ipython.__module__ = "IPython.core.getipython"   # as shown by %whos, repr() and help()


def patch_getipython(mod):
    mod.get_ipython = get_ipython


def _set_matplotlib_formats(*formats, **kwargs):
    from cellbox import _inline
    _inline.set_formats(*formats, **kwargs)


def _set_matplotlib_close(close=True):
    from cellbox import _inline
    _inline.configure("close_figures", bool(close))


def patch_core_display(mod):
    """IPython.display.set_matplotlib_formats / set_matplotlib_close (deprecated
    in IPython, with the same warning) configure cellbox's inline backend."""
    import warnings

    def set_matplotlib_formats(*formats, **kwargs):
        warnings.warn("`set_matplotlib_formats` is deprecated since IPython 7.23, directly use "
                      "`matplotlib_inline.backend_inline.set_matplotlib_formats()`", DeprecationWarning, stacklevel=2)
        _set_matplotlib_formats(*formats, **kwargs)

    def set_matplotlib_close(close=True):
        warnings.warn("`set_matplotlib_close` is deprecated since IPython 7.23, directly use "
                      "`matplotlib_inline.backend_inline.set_matplotlib_close()`", DeprecationWarning, stacklevel=2)
        _set_matplotlib_close(close)

    mod.set_matplotlib_formats = set_matplotlib_formats
    mod.set_matplotlib_close = set_matplotlib_close


def patch_magic(mod):
    """IPython.core.magic: a Magics class made with get_ipython() as its shell
    (ip.register_magics(MyMagics), MyMagics(ip)) gets a traitlets parent that
    is a Configurable (IPython's Magics passes the shell as its parent and
    traitlets insists on the type); its ``shell`` stays the facade."""
    init = mod.Magics.__init__
    if getattr(init, "_cellbox", False):
        return

    def __init__(self, shell=None, **kwargs):
        if isinstance(shell, ZMQInteractiveShell):
            kwargs.setdefault("parent", _configurable_parent(shell))
            shell.configurables.append(self)
            init(self, shell=None, **kwargs)
            self.shell = shell
        else:
            init(self, shell=shell, **kwargs)
    __init__._cellbox = True
    __init__.__doc__ = init.__doc__
    mod.Magics.__init__ = __init__


_parent = None


def _configurable_parent(facade):
    global _parent
    if _parent is None:
        from traitlets.config import Config, Configurable
        _parent = Configurable(config=Config(facade.config))
    return _parent


def patch_interactiveshell(mod):
    """isinstance(get_ipython(), InteractiveShellABC) holds, as under ipykernel."""
    mod.InteractiveShellABC.register(ZMQInteractiveShell)


def patch_matplotlib_inline(mod):
    """matplotlib_inline.backend_inline's functions (which would create a real
    IPython shell) configure cellbox's inline backend."""
    mod.set_matplotlib_formats = _set_matplotlib_formats
    mod.set_matplotlib_close = _set_matplotlib_close
