"""IPython compatibility: what IPython-aware code finds in the cellbox kernel.

Libraries ask ``get_ipython()`` for the display formatter, the display
publisher, events, the kernel's comm manager and the config, and detect a
notebook by the class name (``ZMQInteractiveShell``; pandas looks for "zmq"
in it to size its text output like under ipykernel). ZMQInteractiveShell
here is a thin facade over cellbox's Shell (anything it does not define is
the Shell's), created on first use.

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
        self.error_in_exec = None
        self.result = None

    @property
    def success(self):
        return self.error_before_exec is None and self.error_in_exec is None

    def raise_error(self):
        if self.error_in_exec is not None:
            raise self.error_in_exec


class DisplayPublisher:
    """get_ipython().display_pub."""

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        from cellbox.display import publish_display_data
        publish_display_data(data, metadata, transient=transient, update=update)

    def clear_output(self, wait=False):
        from cellbox.display import clear_output
        clear_output(wait)


class Kernel:
    """get_ipython().kernel: what libraries use of ipykernel's Kernel."""

    implementation = "cellbox"
    language = "python"

    def __init__(self, shell):
        self.shell = shell

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
        self.parent = None

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "_shell"), name)

    def __repr__(self):
        return "<cellbox._ipython.ZMQInteractiveShell object at %#x>" % id(self)

    @property
    def comm_manager(self):
        return self.kernel.comm_manager

    @property
    def user_ns(self):
        return self._shell.user_ns

    def get_ipython(self):
        return self

    def showtraceback(self, exc_tuple=None, filename=None, tb_offset=None, exception_only=False,
                      running_compiled_code=False):
        show_exception(exc_tuple[1] if exc_tuple else None)

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


def patch_getipython(mod):
    mod.get_ipython = get_shell


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


def patch_matplotlib_inline(mod):
    """matplotlib_inline.backend_inline's functions (which would create a real
    IPython shell) configure cellbox's inline backend."""
    mod.set_matplotlib_formats = _set_matplotlib_formats
    mod.set_matplotlib_close = _set_matplotlib_close
