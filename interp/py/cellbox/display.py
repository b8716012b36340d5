"""cellbox.display: rich output for the cellbox kernel.

``display(*objs, include=None, exclude=None, metadata=None, transient=None,
display_id=None, raw=False, clear=False)`` publishes ``display_data`` with a
MIME bundle built from the objects' ``_repr_*_`` methods, like IPython.
``text/plain`` is always present. A repr method that raises is reported on
stderr and skipped.
"""
import base64
import json
import sys
import uuid

import _cellbox_c

__all__ = ["display", "update_display", "clear_output", "DisplayHandle", "publish_display_data",
           "format_object"]

_REPR_METHODS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
    ("application/pdf", "_repr_pdf_"),
)
_BINARY = {"image/png", "image/jpeg", "application/pdf"}

# Formatters for types that have no _repr_*_ methods: {type-or-"module.Class": fn(obj) -> (data, md)}
_type_formatters = {}


def register_formatter(key, fn):
    """fn(obj) -> (data dict, metadata dict) or None. key: type or 'module.QualName'."""
    _type_formatters[key] = fn


def _dumps(obj):
    return json.dumps(obj, ensure_ascii=False, default=repr, allow_nan=True)


def _warn_repr(obj, method, exc):
    sys.stderr.write("[cellbox] %s.%s() raised %s: %s; falling back to other representations\n" % (
        type(obj).__name__, method, type(exc).__name__, exc))


def _encode(mime, value):
    if mime in _BINARY and isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if mime == "application/json" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _text_plain(obj):
    from cellbox._pretty import pretty
    try:
        return pretty(obj)
    except Exception as e:  # a broken __repr__ must not lose the output
        _warn_repr(obj, "__repr__", e)
        return "<%s object at %#x>" % (type(obj).__name__, id(obj))


def _lookup_type_formatter(obj):
    if not _type_formatters:
        return None
    for cls in type(obj).__mro__:
        fn = _type_formatters.get(cls) or _type_formatters.get("%s.%s" % (cls.__module__, cls.__qualname__))
        if fn is not None:
            return fn
    return None


def format_object(obj, include=None, exclude=None):
    """-> (data, metadata): the MIME bundle of obj, text/plain included."""
    data, md = {}, {}
    bundle = getattr(obj, "_repr_mimebundle_", None)
    if bundle is not None and not isinstance(obj, type):
        try:
            r = bundle(include=include, exclude=exclude)
            if isinstance(r, tuple):
                d, m = r
            else:
                d, m = r, {}
            if d:
                data.update({k: _encode(k, v) for k, v in d.items()})
            if m:
                md.update(m)
        except Exception as e:
            _warn_repr(obj, "_repr_mimebundle_", e)
    fmt = _lookup_type_formatter(obj)
    if fmt is not None:
        try:
            r = fmt(obj)
            if r:
                d, m = r
                for k, v in d.items():
                    data.setdefault(k, v)
                md.update(m or {})
        except Exception as e:
            _warn_repr(obj, "formatter", e)
    if not isinstance(obj, type):
        for mime, meth in _REPR_METHODS:
            if mime in data:
                continue
            if include is not None and mime not in include:
                continue
            if exclude is not None and mime in exclude:
                continue
            fn = getattr(obj, meth, None)
            if fn is None or not callable(fn):
                continue
            try:
                r = fn()
            except NotImplementedError:
                continue
            except Exception as e:
                _warn_repr(obj, meth, e)
                continue
            if r is None:
                continue
            if isinstance(r, tuple) and len(r) == 2:
                r, m = r
                if m:
                    md[mime] = m
            data[mime] = _encode(mime, r)
    if "text/plain" not in data:
        data["text/plain"] = _text_plain(obj)
    if include is not None:
        data = {k: v for k, v in data.items() if k in include or k == "text/plain"}
    if exclude is not None:
        data = {k: v for k, v in data.items() if k not in exclude or k == "text/plain"}
    return data, md


def publish_display_data(data, metadata=None, transient=None, update=False, source=None, **kw):
    content = {"data": data, "metadata": metadata or {}}
    if transient:
        content["transient"] = transient
    _cellbox_c.publish("update_display_data" if update else "display_data", _dumps(content))


def publish_execute_result(value, count):
    """The cell's result (called by the displayhook). Returns the text/plain."""
    ipd = getattr(value, "_ipython_display_", None)
    if ipd is not None and not isinstance(value, type) and callable(ipd):
        ipd()
        return None
    data, md = format_object(value)
    _cellbox_c.publish("execute_result", _dumps({"execution_count": count, "data": data, "metadata": md}))
    return data.get("text/plain")


def display(*objs, include=None, exclude=None, metadata=None, transient=None, display_id=None,
            raw=False, clear=False, **kwargs):
    """Display objects (like IPython.display.display). Returns a DisplayHandle
    when display_id is given (True makes a new id)."""
    if clear:
        clear_output(wait=True)
    if transient is None:
        transient = {}
    if display_id:
        if display_id is True:
            display_id = uuid.uuid4().hex
        transient = dict(transient, display_id=display_id)
    update = kwargs.pop("update", False)
    for obj in objs:
        if raw:
            publish_display_data(obj, metadata, transient=transient or None, update=update)
            continue
        ipd = getattr(obj, "_ipython_display_", None)
        if ipd is not None and not isinstance(obj, type) and callable(ipd):
            ipd()
            continue
        data, md = format_object(obj, include=include, exclude=exclude)
        if metadata:
            md = dict(md)
            md.update(metadata)
        publish_display_data(data, md, transient=transient or None, update=update)
    if display_id:
        return DisplayHandle(display_id)
    return None


def update_display(obj, *, display_id, **kwargs):
    kwargs["update"] = True
    display(obj, display_id=display_id, **kwargs)


def clear_output(wait=False):
    _cellbox_c.publish("clear_output", '{"wait":%s}' % ("true" if wait else "false"))


class DisplayHandle:
    """A handle on a display, to update it in place."""

    def __init__(self, display_id=None):
        self.display_id = display_id or uuid.uuid4().hex

    def __repr__(self):
        return "<%s display_id=%s>" % (type(self).__name__, self.display_id)

    def display(self, obj, **kwargs):
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs):
        update_display(obj, display_id=self.display_id, **kwargs)


def patch_ipython(mod):
    """Make IPython.display publish through this kernel (called when
    IPython.core.display_functions is imported)."""
    mod.display = display
    mod.update_display = update_display
    mod.clear_output = clear_output
    mod.publish_display_data = _ipython_publish_display_data
    mod.DisplayHandle = DisplayHandle


def _ipython_publish_display_data(data, metadata=None, source=None, *, transient=None, **kwargs):
    publish_display_data(data, metadata, transient=transient, update=kwargs.get("update", False))
