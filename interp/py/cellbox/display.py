"""cellbox.display: rich output for the cellbox kernel.

``display(*objs, include=None, exclude=None, metadata=None, transient=None,
display_id=None, raw=False, clear=False)`` publishes ``display_data``; the
cell's result becomes ``execute_result``. Both go through one formatter that
behaves like IPython's DisplayFormatter, so a notebook shows the same
outputs under cellbox as under ipykernel:

- ``_ipython_display_`` first (the object displays itself, nothing else);
- then ``_repr_mimebundle_(include, exclude)``, whose keys win;
- then, in IPython's order, text/plain (IPython's pretty printer, see
  _pretty.py), ``_repr_html_``, ``_repr_markdown_``, ``_repr_svg_``,
  ``_repr_png_``, ``_repr_pdf_``, ``_repr_jpeg_``, ``_repr_latex_``,
  ``_repr_json_``, ``_repr_javascript_``; each may return data or
  (data, metadata), and formatters registered with ``for_type`` win over
  the methods.

A repr method that raises is reported on stderr (one line) and skipped;
the others still show. The formatter objects have IPython's API (for_type,
for_type_by_name, lookup, pop, type_printers), so libraries that register
formatters through ``get_ipython().display_formatter`` work.

This module never imports IPython; cellbox._ipython points IPython's own
display functions here when the user imports IPython.
"""
import binascii
import json
import math
import os
import struct
import sys
import types
import warnings

import _cellbox_c

__all__ = ["display", "update_display", "clear_output", "DisplayHandle", "publish_display_data",
           "format_object", "HTML", "Markdown", "Math", "Latex", "SVG", "JSON", "Javascript", "Image",
           "Pretty", "ProgressBar", "DisplayObject", "TextDisplayObject"]


# -- JSON ---------------------------------------------------------------------------
# jupyter_client's rules: bytes become base64 (with its trailing newline),
# datetimes ISO 8601, iterables lists, numbers plain; NaN is not JSON, so a
# message holding one is cleaned (NaN -> 'nan') like jupyter_client does.

def _json_default(obj):
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return binascii.b2a_base64(bytes(obj)).decode("ascii")
    import datetime
    if isinstance(obj, datetime.datetime):
        if obj.tzinfo is None:
            obj = obj.replace(tzinfo=datetime.timezone.utc)
        return obj.isoformat().replace("+00:00", "Z")
    if hasattr(obj, "__iter__"):
        return list(obj)
    import numbers
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return float(obj)
    raise TypeError("%r is not JSON serializable" % (obj,))


def _clean(obj):
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return repr(obj)
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_clean(x) for x in obj]
    return obj


def dumps(obj):
    """JSON text of a message content (what jupyter_client would send)."""
    try:
        return json.dumps(obj, default=_json_default, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(_clean(obj), default=_json_default, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        sys.stderr.write("[cellbox] output is not JSON serializable (%s); sent with repr()\n" % e)
        return json.dumps(_clean(obj), default=repr, ensure_ascii=False)


# -- formatters ------------------------------------------------------------------------

class FormatterWarning(UserWarning):
    """A formatter returned data of the wrong type."""


def _real_method(obj, name):
    """obj.name if it is a real callable method (not on a class, not from
    an object that claims to have every attribute)."""
    try:
        if getattr(obj, "_ipython_canary_method_should_not_exist_", None) is not None:
            return None
        m = getattr(obj, name, None)
    except Exception:
        return None
    if isinstance(obj, type) and not isinstance(m, types.MethodType):
        return None
    return m if callable(m) else None


def _safe_repr(obj):
    try:
        return repr(obj)
    except Exception as e:
        return "un-repr-able object (%r)" % e


def _warn_raised(obj, fmt, exc):
    name = getattr(fmt, "print_method", None) or fmt.format_type
    if name == "_repr_pretty_" and not hasattr(type(obj), "_repr_pretty_"):
        name = "__repr__"
    try:
        where = "%s.%s()" % (type(obj).__name__, name) if not fmt.lookup_or_none(obj) else "the %s formatter" % fmt.format_type
    except Exception:
        where = name
    sys.stderr.write("[cellbox] %s raised %s: %s; showing the other representations\n" % (
        where, type(exc).__name__, exc))


class BaseFormatter:
    """One MIME type: registered printers by type, then the object's method."""

    format_type = "text/plain"
    print_method = "__repr__"
    _return_type = (str,)

    def __init__(self):
        self.enabled = True
        self.type_printers = {}
        self.deferred_printers = {}
        self.singleton_printers = {}

    def __call__(self, obj):
        try:
            r = self._compute(obj)
        except NotImplementedError:
            return None
        except Exception as e:
            _warn_raised(obj, self, e)
            return None
        return self._check_return(r, obj)

    def _compute(self, obj):
        if not self.enabled:
            return None
        printer = self.lookup_or_none(obj)
        if printer is not None:
            return printer(obj)
        m = _real_method(obj, self.print_method)
        return m() if m is not None else None

    def _check_return(self, r, obj):
        if r is None or isinstance(r, self._return_type) or (
                isinstance(r, tuple) and r and isinstance(r[0], self._return_type)):
            return r
        warnings.warn("%s formatter returned invalid type %s (expected %s) for object: %s" % (
            self.format_type, type(r), self._return_type if len(self._return_type) > 1 else self._return_type[0],
            _safe_repr(obj)), FormatterWarning)
        return None

    # -- IPython's registration API
    def lookup_or_none(self, obj):
        if not (self.type_printers or self.deferred_printers or self.singleton_printers):
            return None
        try:
            return self.lookup(obj)
        except KeyError:
            return None

    def lookup(self, obj):
        f = self.singleton_printers.get(id(obj))
        if f is not None:
            return f
        return self.lookup_by_type(type(obj) if not hasattr(obj, "__class__") else obj.__class__)

    def lookup_by_type(self, typ):
        if isinstance(typ, str):
            key = tuple(typ.rsplit(".", 1))
            if key in self.deferred_printers:
                return self.deferred_printers[key]
            for cls in self.type_printers:
                if (getattr(cls, "__module__", None), getattr(cls, "__name__", None)) == key:
                    return self.type_printers[cls]
        else:
            for cls in getattr(typ, "__mro__", (typ,)):
                if cls in self.type_printers:
                    return self.type_printers[cls]
                key = (getattr(cls, "__module__", None), getattr(cls, "__name__", None))
                if key in self.deferred_printers:
                    f = self.type_printers[cls] = self.deferred_printers.pop(key)
                    return f
        raise KeyError("No registered printer for %r" % (typ,))

    def __contains__(self, typ):
        try:
            self.lookup_by_type(typ)
        except KeyError:
            return False
        return True

    def for_type(self, typ, func=None):
        if isinstance(typ, str):
            mod, name = typ.rsplit(".", 1)
            return self.for_type_by_name(mod, name, func)
        try:
            old = self.lookup_by_type(typ)
        except KeyError:
            old = None
        if func is not None:
            self.type_printers[typ] = func
        return old

    def for_type_by_name(self, type_module, type_name, func=None):
        key = (type_module, type_name)
        try:
            old = self.lookup_by_type("%s.%s" % key)
        except KeyError:
            old = None
        if func is not None:
            self.deferred_printers[key] = func
        return old

    _unset = object()

    def pop(self, typ, default=_unset):
        if isinstance(typ, str):
            key = tuple(typ.rsplit(".", 1))
            if key in self.deferred_printers:
                return self.deferred_printers.pop(key)
            for cls in list(self.type_printers):
                if (getattr(cls, "__module__", None), getattr(cls, "__name__", None)) == key:
                    return self.type_printers.pop(cls)
        elif typ in self.type_printers:
            return self.type_printers.pop(typ)
        else:
            key = (getattr(typ, "__module__", None), getattr(typ, "__name__", None))
            if key in self.deferred_printers:
                return self.deferred_printers.pop(key)
        if default is self._unset:
            raise KeyError("No registered value for %r" % (typ,))
        return default


class PlainTextFormatter(BaseFormatter):
    """text/plain: IPython's pretty printer (type printers take (obj, p, cycle))."""

    format_type = "text/plain"
    print_method = "_repr_pretty_"

    def __init__(self):
        from cellbox._pretty import PlainText
        self._pt = PlainText()
        self.enabled = True
        self.type_printers = self._pt.type_printers
        self.deferred_printers = self._pt.deferred_printers
        self.singleton_printers = self._pt.singleton_printers

    def __getattr__(self, name):
        # max_width, pprint, float_precision, ... live in the PlainText state
        return getattr(self.__dict__["_pt"], name)

    def __setattr__(self, name, value):
        if name in ("max_width", "max_seq_length", "newline", "pprint", "verbose", "float_precision",
                    "float_format"):
            setattr(self._pt, name, value)
        else:
            object.__setattr__(self, name, value)

    def __call__(self, obj):
        try:
            return self._pt(obj)
        except Exception as e:
            _warn_raised(obj, self, e)
            try:
                return repr(obj)
            except Exception:
                return "<%s object at %#x>" % (type(obj).__name__, id(obj))


class HTMLFormatter(BaseFormatter):
    format_type, print_method = "text/html", "_repr_html_"


class MarkdownFormatter(BaseFormatter):
    format_type, print_method = "text/markdown", "_repr_markdown_"


class SVGFormatter(BaseFormatter):
    format_type, print_method = "image/svg+xml", "_repr_svg_"


class PNGFormatter(BaseFormatter):
    format_type, print_method, _return_type = "image/png", "_repr_png_", (bytes, str)


class PDFFormatter(BaseFormatter):
    format_type, print_method, _return_type = "application/pdf", "_repr_pdf_", (bytes, str)


class JPEGFormatter(BaseFormatter):
    format_type, print_method, _return_type = "image/jpeg", "_repr_jpeg_", (bytes, str)


class LatexFormatter(BaseFormatter):
    format_type, print_method = "text/latex", "_repr_latex_"


class TableSchemaFormatter(BaseFormatter):
    """pandas' table schema (`pd.options.display.html.table_schema = True`):
    application/vnd.dataresource+json from _repr_data_resource_, as the
    formatter pandas registers in IPython (see enable_table_schema)."""
    format_type, print_method, _return_type = "application/vnd.dataresource+json", "_repr_data_resource_", (dict,)


def enable_table_schema(enable):
    """pandas' enable_data_resource_formatter for this kernel: pandas only
    does it when IPython is imported, which a plain cellbox kernel is not."""
    formatters = get_formatter().formatters
    mime = TableSchemaFormatter.format_type
    if enable:
        if mime not in formatters:
            formatters[mime] = TableSchemaFormatter()
        formatters[mime].enabled = True
    elif mime in formatters:
        formatters[mime].enabled = False


class JSONFormatter(BaseFormatter):
    format_type, print_method, _return_type = "application/json", "_repr_json_", (list, dict)

    def _check_return(self, r, obj):
        if r is None:
            return None
        md = None
        if isinstance(r, tuple):
            r, md = r
        if isinstance(r, str):
            # JSON as a string was dropped from IPython long ago; be helpful
            warnings.warn("JSON expects JSONable list/dict containers, not JSON strings", FormatterWarning)
            try:
                r = json.loads(r)
            except ValueError:
                return None
        r = BaseFormatter._check_return(self, r, obj)
        return (r, md) if md is not None and r is not None else r


class JavascriptFormatter(BaseFormatter):
    format_type, print_method = "application/javascript", "_repr_javascript_"


class IPythonDisplayFormatter(BaseFormatter):
    """_ipython_display_: the object publishes itself; True when it did."""

    format_type, print_method, _return_type = "ipython_display", "_ipython_display_", (type(None), bool)

    def __call__(self, obj):
        if not self.enabled:
            return False
        try:
            printer = self.lookup_or_none(obj)
            if printer is not None:
                printer(obj)
                return True
            m = _real_method(obj, self.print_method)
            if m is not None:
                m()
                return True
        except NotImplementedError:
            return False
        except Exception as e:
            _warn_raised(obj, self, e)
            return False
        return False


class MimeBundleFormatter(BaseFormatter):
    """_repr_mimebundle_(include, exclude) -> data or (data, metadata)."""

    format_type, print_method, _return_type = "mimebundle", "_repr_mimebundle_", (dict,)

    def __call__(self, obj, include=None, exclude=None):
        try:
            if not self.enabled:
                r = None
            else:
                printer = self.lookup_or_none(obj)
                if printer is not None:
                    r = printer(obj)
                else:
                    m = _real_method(obj, self.print_method)
                    r = m(include=include, exclude=exclude) if m is not None else None
        except NotImplementedError:
            r = None
        except Exception as e:
            _warn_raised(obj, self, e)
            r = None
        r = self._check_return(r, obj)
        if r is None:
            return {}, {}
        if not isinstance(r, tuple):
            return r, {}
        return r


def _registered(f, obj):
    """The printer registered for obj in formatter f, or None. f may be one
    of IPython's BaseFormatters that code put in the formatters dict
    (rich.pretty.install() does for text/plain): IPython's lookup() then."""
    lookup_or_none = getattr(f, "lookup_or_none", None)
    if lookup_or_none is not None:
        return lookup_or_none(obj)
    try:
        return f.lookup(obj)
    except Exception:   # KeyError: none registered
        return None


class DisplayFormatter:
    """obj -> (data, metadata), like IPython's DisplayFormatter.format."""

    def __init__(self):
        self.ipython_display_formatter = IPythonDisplayFormatter()
        self.mimebundle_formatter = MimeBundleFormatter()
        self.formatters = {}
        for cls in (PlainTextFormatter, HTMLFormatter, MarkdownFormatter, SVGFormatter, PNGFormatter,
                    PDFFormatter, JPEGFormatter, LatexFormatter, JSONFormatter, JavascriptFormatter):
            f = cls()
            self.formatters[f.format_type] = f
        self.active_types = list(self.formatters)

    @property
    def format_types(self):
        return list(self.formatters)

    def format(self, obj, include=None, exclude=None):
        if self.ipython_display_formatter(obj):
            return {}, {}
        data, md = self.mimebundle_formatter(obj, include=include, exclude=exclude)
        if data or md:
            # copies: the object's own dicts must not change under it
            data, md = dict(data), dict(md or {})
            if include:
                data = {k: v for k, v in data.items() if k in include}
                md = {k: v for k, v in md.items() if k in include}
            if exclude:
                data = {k: v for k, v in data.items() if k not in exclude}
                md = {k: v for k, v in md.items() if k not in exclude}
        for mime, f in self.formatters.items():
            if mime in data and _registered(f, obj) is None:
                continue  # the bundle's value, unless a printer is registered for this type
            if include and mime not in include:
                continue
            if exclude and mime in exclude:
                continue
            r = f(obj)
            m = None
            if isinstance(r, tuple) and len(r) == 2:
                r, m = r
            if r is not None:
                data[mime] = r
            if m is not None:
                md[mime] = m
        return data, md


_formatter = None


def get_formatter():
    """The kernel's DisplayFormatter (get_ipython().display_formatter)."""
    global _formatter
    if _formatter is None:
        _formatter = DisplayFormatter()
    return _formatter


def format_object(obj, include=None, exclude=None):
    """-> (data, metadata): the MIME bundle of obj, text/plain included."""
    return get_formatter().format(obj, include=include, exclude=exclude)


# -- publishing ---------------------------------------------------------------------------

_publish = _cellbox_c.publish


def _replaced_pub():
    """get_ipython().display_pub when code replaced it (IPython's
    capture_output puts a CapturingDisplayPublisher there), else None."""
    ipy = sys.modules.get("cellbox._ipython")
    facade = ipy._facade if ipy is not None else None
    if facade is None:
        return None
    pub = facade.display_pub
    return None if isinstance(pub, ipy.DisplayPublisher) else pub


def publish_display_data(data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
    """Publish a MIME bundle as display_data (update_display_data with update=True)."""
    pub = _replaced_pub()
    if pub is not None:
        pub.publish(data=data, metadata=metadata, transient=transient, update=update)
        return
    content = {"data": data, "metadata": metadata if metadata is not None else {},
               "transient": transient if transient is not None else {}}
    _publish("update_display_data" if update else "display_data", dumps(content))


def publish_execute_result(value, count):
    """The cell's result (called by the displayhook). Returns its text/plain,
    or None when nothing was sent (the object displayed itself)."""
    data, md = get_formatter().format(value)
    if not data:
        return None
    _publish("execute_result", dumps({"data": data, "metadata": md, "execution_count": count}))
    return data.get("text/plain")


def _merge(d1, d2):
    if not isinstance(d2, dict) or not isinstance(d1, dict):
        return d2
    for k, v in d2.items():
        d1[k] = _merge(d1.get(k), v)
    return d1


def _new_id():
    return binascii.b2a_hex(os.urandom(16)).decode("ascii")


def display(*objs, include=None, exclude=None, metadata=None, transient=None, display_id=None,
            raw=False, clear=False, **kwargs):
    """Display objects in the frontend (IPython.display.display's contract).

    raw: the objects are MIME bundles already. display_id: make the output
    updatable (True picks a new id); a DisplayHandle is returned then.
    clear: clear the output area first (waiting for the new output)."""
    if transient is None:
        transient = {}
    if metadata is None:
        metadata = {}
    if display_id:
        if display_id is True:
            display_id = _new_id()
        transient["display_id"] = display_id
    update = bool(kwargs.pop("update", False))
    if update and "display_id" not in transient:
        raise TypeError("display_id required for update_display")
    if not objs and display_id:
        objs = [{}]   # an empty output to update later
        raw = True
    if clear:
        clear_output(wait=True)
    fmt = None if raw else get_formatter().format
    for obj in objs:
        if raw:
            publish_display_data(obj, metadata, transient=transient, update=update)
            continue
        data, md = fmt(obj, include=include, exclude=exclude)
        if not data:
            continue  # _ipython_display_ took over
        if metadata:
            _merge(md, metadata)
        publish_display_data(data, md, transient=transient, update=update)
    if display_id:
        return DisplayHandle(display_id)
    return None


def update_display(obj, *, display_id, **kwargs):
    """Replace the output(s) shown with this display_id."""
    kwargs["update"] = True
    display(obj, display_id=display_id, **kwargs)


def clear_output(wait=False):
    """Clear the cell's output now, or (wait=True) when new output arrives."""
    pub = _replaced_pub()
    if pub is not None:
        pub.clear_output(wait=wait)
        return
    _publish("clear_output", '{"wait": true}' if wait else '{"wait": false}')


class DisplayHandle:
    """A handle on an updatable display."""

    def __init__(self, display_id=None):
        self.display_id = display_id if display_id is not None else _new_id()

    def __repr__(self):
        return "<%s display_id=%s>" % (self.__class__.__name__, self.display_id)

    def display(self, obj, **kwargs):
        display(obj, display_id=self.display_id, **kwargs)

    def update(self, obj, **kwargs):
        update_display(obj, display_id=self.display_id, **kwargs)


# -- display objects ---------------------------------------------------------------------
# cellbox's own, for code that does not use IPython (IPython's classes work
# as well: they only need the formatter above).

class DisplayObject:
    """Data to show, given inline, read from a file or fetched from a URL."""

    _read_flags = "r"

    def __init__(self, data=None, url=None, filename=None, metadata=None):
        if isinstance(data, os.PathLike):
            data = os.fspath(data)
        if data is not None and isinstance(data, str) and url is None and filename is None:
            if data.startswith("http://") or data.startswith("https://"):
                url, data = data, None
            elif len(data) < 4096 and "\n" not in data and os.path.isfile(data):
                filename, data = data, None
        self.data = data
        self.url = url
        self.filename = filename
        self.metadata = dict(metadata) if metadata else {}
        self.reload()

    def reload(self):
        if self.filename is not None:
            with open(self.filename, self._read_flags, **({} if "b" in self._read_flags else {"encoding": "utf-8"})) as f:
                self.data = f.read()
        elif self.url is not None and self.data is None:
            from urllib.request import urlopen
            with urlopen(self.url) as r:
                raw = r.read()
            self.data = raw if "b" in self._read_flags else raw.decode("utf-8", "replace")

    def _data_and_metadata(self):
        if self.metadata:
            import copy
            return self.data, copy.deepcopy(self.metadata)
        return self.data

    def __repr__(self):
        return "<%s.%s object>" % (self.__class__.__module__, self.__class__.__name__)


class TextDisplayObject(DisplayObject):
    """Text data (HTML, Markdown, LaTeX...)."""


class Pretty(TextDisplayObject):
    """Plain text, shown as is."""

    def _repr_pretty_(self, p, cycle):
        p.text(self.data if isinstance(self.data, str) else repr(self.data))


class HTML(TextDisplayObject):
    def _repr_html_(self):
        return self._data_and_metadata()

    def __html__(self):
        return self._repr_html_()


class Markdown(TextDisplayObject):
    def _repr_markdown_(self):
        return self._data_and_metadata()


class Math(TextDisplayObject):
    """A LaTeX formula, displayed as a block (``$\\displaystyle ...$``)."""

    def _repr_latex_(self):
        s = r"$\displaystyle %s$" % self.data.strip("$")
        return (s, dict(self.metadata)) if self.metadata else s


class Latex(TextDisplayObject):
    def _repr_latex_(self):
        return self._data_and_metadata()


class SVG(DisplayObject):
    _read_flags = "rb"

    def __init__(self, data=None, url=None, filename=None, metadata=None):
        super().__init__(data, url, filename, metadata)
        if isinstance(self.data, bytes):
            self.data = self.data.decode("utf-8", "replace")
        if isinstance(self.data, str):
            # keep the <svg> element only (a file may start with an XML prolog)
            i = self.data.find("<svg")
            if i > 0:
                self.data = self.data[i:]

    def _repr_svg_(self):
        return self._data_and_metadata()


class JSON(DisplayObject):
    """A JSON document shown as an expandable tree."""

    def __init__(self, data=None, url=None, filename=None, expanded=False, metadata=None, root="root", **kwargs):
        self.metadata = {"expanded": expanded, "root": root}
        if metadata:
            self.metadata.update(metadata)
        if kwargs:
            self.metadata.update(kwargs)
        md = self.metadata
        super().__init__(data=data, url=url, filename=filename)
        self.metadata = md
        if isinstance(self.data, (bytes, str)) and (filename or url):
            self.data = json.loads(self.data)

    def _repr_json_(self):
        return self._data_and_metadata()


class Javascript(TextDisplayObject):
    def __init__(self, data=None, url=None, filename=None, lib=None, css=None):
        self.lib = [lib] if isinstance(lib, str) else (lib or [])
        self.css = [css] if isinstance(css, str) else (css or [])
        super().__init__(data=data, url=url, filename=filename)

    def _repr_javascript_(self):
        # stylesheets first, then each library loaded (in order) before the code runs
        r = "".join('(function () { var l = document.createElement("link"); l.rel = "stylesheet"; '
                    'l.type = "text/css"; l.href = "%s"; document.head.appendChild(l); })();\n' % c
                    for c in self.css)
        for lib in self.lib:
            r += ('new Promise(function (resolve, reject) { var s = document.createElement("script"); '
                  's.onload = resolve; s.onerror = reject; s.src = "%s"; document.head.appendChild(s); })'
                  '.then(function () {\n' % lib)
        r += self.data or ""
        r += "\n});" * len(self.lib)
        return r


def _png_size(data):
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _jpeg_size(data):
    i = 2
    n = len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


class Image(DisplayObject):
    """A PNG or JPEG image from bytes, a file or a URL.

    width/height set the displayed size; retina=True shows the image at
    half its pixel size (a 2x image); embed=False with a URL refers to it."""

    _read_flags = "rb"
    _MIME = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}

    def __init__(self, data=None, url=None, filename=None, format=None, embed=None, width=None, height=None,
                 retina=False, unconfined=False, metadata=None, alt=None):
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
        name = filename or url or (data if isinstance(data, str) else None)
        if format is None and name:
            ext = os.path.splitext(name.split("?")[0])[1].lower().lstrip(".")
            format = {"jpg": "jpeg"}.get(ext, ext) or None
        if format is None and isinstance(data, bytes):
            format = "jpeg" if data[:2] == b"\xff\xd8" else "png"
        self.format = (format or "png").lower()
        if self.format == "jpg":
            self.format = "jpeg"
        if self.format not in ("png", "jpeg"):
            raise ValueError("Cannot embed the %r image format" % self.format)
        if embed is None:
            embed = not (url or (isinstance(data, str) and data.startswith("http")))
        self.embed = embed
        self.width, self.height, self.retina, self.unconfined, self.alt = width, height, retina, unconfined, alt
        super().__init__(data=data, url=url, filename=filename, metadata=metadata)
        if retina and isinstance(self.data, bytes):
            size = _png_size(self.data) if self.format == "png" else _jpeg_size(self.data)
            if size:
                self.width, self.height = size[0] // 2, size[1] // 2

    def reload(self):
        if self.embed:
            super().reload()

    @property
    def _mimetype(self):
        return self._MIME[self.format]

    def _metadata(self):
        md = {}
        if self.width:
            md["width"] = self.width
        if self.height:
            md["height"] = self.height
        if self.unconfined:
            md["unconfined"] = self.unconfined
        if self.alt:
            md["alt"] = self.alt
        if self.metadata:
            md.update(self.metadata)
        return md

    def _repr_mimebundle_(self, include=None, exclude=None):
        if not self.embed:
            return {"text/html": self._repr_html_()}
        b64 = binascii.b2a_base64(self.data).decode("ascii")  # with its newline, as IPython
        md = self._metadata()
        return ({self._mimetype: b64}, {self._mimetype: md}) if md else {self._mimetype: b64}

    def _repr_html_(self):
        if self.embed:
            return None
        attrs = "".join(' %s="%s"' % (k, v) for k, v in (("width", self.width), ("height", self.height),
                                                          ("alt", self.alt)) if v)
        cls = ' class="unconfined"' if self.unconfined else ""
        return '<img src="%s"%s%s/>' % (self.url or self.data, attrs, cls)


class ProgressBar(DisplayObject):
    """An HTML progress bar, updated in place: iterate over it, or set .progress."""

    def __init__(self, total):
        self.total = total
        self._progress = 0
        self.html_width = "60ex"
        self.text_width = 60
        self._display_id = _new_id()

    def __repr__(self):
        fraction = self.progress / self.total if self.total else 1
        filled = "=" * int(fraction * self.text_width)
        return "[{}{}] {}/{}".format(filled, " " * (self.text_width - len(filled)), self.progress, self.total)

    def _repr_html_(self):
        return "<progress style='width:{}' max='{}' value='{}'></progress>".format(
            self.html_width, self.total, self.progress)

    def display(self):
        display(self, display_id=self._display_id)

    def update(self):
        display(self, display_id=self._display_id, update=True)

    @property
    def progress(self):
        return self._progress

    @progress.setter
    def progress(self, value):
        self._progress = value
        self.update()

    def __iter__(self):
        self.display()
        self._progress = -1
        return self

    def __next__(self):
        self.progress += 1
        if self.progress < self.total:
            return self.progress
        raise StopIteration()
