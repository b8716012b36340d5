"""inspect_request and obj? / obj?? for the cellbox kernel.

detail_level 0: type, string form, signature, docstring, file.
detail_level 1: the source as well (when available).
Only name chains are resolved: inspection never runs user code.
"""
import inspect
import re

from cellbox._complete import MISSING as _MISSING, resolve_name

_RED = "\x1b[0;31m"
_RESET = "\x1b[0m"
_NAME_AT = re.compile(r"[A-Za-z_][\w.]*")


def _resolve(shell, name):
    return resolve_name(shell.user_ns, name)


def _name_at(code, pos):
    """The dotted name under (or just before) the cursor; else the callee of
    the innermost open call around the cursor."""
    if pos is None:
        pos = len(code)
    for m in _NAME_AT.finditer(code):
        if m.start() <= pos <= m.end():
            return m.group(0).rstrip(".")
    depth = 0
    i = min(pos, len(code)) - 1
    while i >= 0:
        c = code[i]
        if c == ")":
            depth += 1
        elif c == "(":
            if depth == 0:
                # the callee starts where a name can: searched from inside a long
                # name (`aaa…a+(`) this was quadratic (5 s for 20,000 characters)
                m = re.search(r"(?<![\w.])([A-Za-z_][\w.]*)\s*$", code[:i])
                return m.group(1) if m else None
            depth -= 1
        i -= 1
    return None


def _field(label, value):
    return "%s%s:%s %s" % (_RED, label, _RESET, value)


def info_text(obj, name, detail=0):
    """The inspector's page. Each part is the object's own code (signature,
    __doc__, source, file may be properties or __getattr__ that raise): a part
    that fails is left out, the rest is shown (a __doc__ property that raised
    made the whole inspect_request an InternalError)."""
    lines = []
    sig = None
    if callable(obj):
        try:
            sig = str(inspect.signature(obj))
        except Exception:
            sig = None
    if sig is not None and not inspect.isclass(obj):
        lines.append(_field("Signature", name + sig))
    elif not callable(obj) or inspect.isclass(obj):
        try:
            s = repr(obj)
        except Exception:
            s = "<unrepresentable>"
        if len(s) > 200:
            s = s[:200] + "..."
        if not inspect.isclass(obj) and not inspect.ismodule(obj):
            lines.append(_field("Type", type(obj).__name__))
            lines.append(_field("String form", s))
        if inspect.isclass(obj) and sig is not None:
            lines.append(_field("Init signature", name + sig))
    source = None
    if detail:
        try:
            source = inspect.getsource(obj)
        except Exception:
            source = None
    if source:
        lines.append(_field("Source", "\n" + source.rstrip("\n")))
    else:
        try:
            doc = inspect.getdoc(obj)
        except Exception:
            doc = None
        if doc:
            lines.append(_field("Docstring", ("\n" if "\n" in doc else "") + doc))
        else:
            lines.append(_field("Docstring", "<no docstring>"))
    try:
        f = inspect.getfile(obj)
        lines.append(_field("File", f))
    except Exception:
        pass
    if callable(obj) or inspect.ismodule(obj) or inspect.isclass(obj):
        lines.append(_field("Type", type(obj).__name__))
    return "\n".join(lines)


def page_text(shell, name, detail=0):
    obj = _resolve(shell, name)
    if obj is _MISSING:
        return None
    return info_text(obj, name, detail)


def inspect_reply(shell, code, cursor_pos, detail_level=0):
    name = _name_at(code, cursor_pos)
    reply = {"status": "ok", "found": False, "data": {}, "metadata": {}}
    if not name:
        return reply
    obj = _resolve(shell, name)
    if obj is _MISSING:
        return reply
    reply["found"] = True
    # IPython's Inspector page (what ipykernel answers, and what name? shows
    # here too) when IPython is installed; cellbox's own layout otherwise
    text = None
    try:
        text = shell.magics._pinfo_text(name, detail_level)
    except Exception:
        text = None
    reply["data"] = {"text/plain": text if text is not None else info_text(obj, name, detail_level)}
    return reply
