"""text/plain of results, the way IPython's pretty printer writes it.

Frontends show an execute_result's text/plain as is, so cellbox must break
long containers over lines exactly where IPython does (``[0,\\n 1,\\n ...``),
sort sets, print types as ``int`` / ``__main__.Foo``, functions with their
signature, exceptions as calls... This module is a small, independent
implementation of the same layout algorithm (the classic "pretty printer"
of Oppen and Wadler, with groups broken outermost first) and of the same
printer table, without importing IPython (which costs 100+ ms).

It also offers the ``_repr_pretty_(p, cycle)`` protocol: ``p`` has the
methods libraries call (text, breakable, break_, begin_group, end_group,
group, indent, pretty), so objects written for IPython print the same.
"""
import collections
import datetime
import inspect
import os
import re
import types
from contextlib import contextmanager

__all__ = ["pretty", "Printer", "PlainText"]

MAX_SEQ_LENGTH = 1000
_SIMPLE = (int, float, str, bytes, bool, type(None), complex, range)


# -- layout ---------------------------------------------------------------------
# Pending output is a queue of text runs and breakable points. When the line
# would overflow, the outermost group that still has pending breakables is
# told to break; its breakables become newlines as they leave the queue.

class _Group:
    __slots__ = ("depth", "breaks", "want_break")

    def __init__(self, depth):
        self.depth = depth
        self.breaks = collections.deque()
        self.want_break = False


class _Run:
    __slots__ = ("parts", "width")

    def __init__(self):
        self.parts = []
        self.width = 0

    def emit(self, p, col):
        p.out.extend(self.parts)
        return col + self.width


class _Break:
    __slots__ = ("sep", "width", "indent", "group")

    def __init__(self, sep, p):
        self.sep = sep
        self.width = len(sep)
        self.indent = p.indentation
        self.group = p._stack[-1]
        self.group.breaks.append(self)

    def emit(self, p, col):
        g = self.group
        g.breaks.popleft()
        if g.want_break:
            p.out.append(p.newline + " " * self.indent)
            return self.indent
        if not g.breaks:
            p._unqueue(g)
        p.out.append(self.sep)
        return col + self.width


class Printer:
    """The ``p`` of ``_repr_pretty_(self, p, cycle)``."""

    def __init__(self, max_width=79, newline="\n", max_seq_length=MAX_SEQ_LENGTH,
                 type_printers=None, deferred_printers=None, singleton_printers=None, verbose=False):
        self.max_width = max_width
        self.newline = newline
        self.max_seq_length = max_seq_length
        self.verbose = verbose
        self.out = []
        self.output_width = 0
        self.buffer_width = 0
        self.buffer = collections.deque()
        self.indentation = 0
        root = _Group(0)
        self._stack = [root]
        self._queue = [[root]]         # groups by depth, oldest first
        self._seen = []                # ids of the objects being printed (cycles)
        self.type_pprinters = _TYPE_PRINTERS if type_printers is None else type_printers
        self.deferred_pprinters = _DEFERRED_PRINTERS if deferred_printers is None else deferred_printers
        self.singleton_pprinters = _SINGLETONS if singleton_printers is None else singleton_printers

    # -- the queue of groups that may still break
    def _enqueue(self, g):
        while len(self._queue) <= g.depth:
            self._queue.append([])
        self._queue[g.depth].append(g)

    def _unqueue(self, g):
        try:
            self._queue[g.depth].remove(g)
        except (ValueError, IndexError):
            pass

    def _outermost(self):
        """Pops the group to break: the newest with breakables at the lowest
        depth; groups at that depth without breakables just get marked."""
        for level in self._queue:
            for i in range(len(level) - 1, -1, -1):
                g = level[i]
                if g.breaks:
                    # (the original algorithm deletes by the reversed index;
                    # keep that behaviour, it decides which group is dropped)
                    del level[len(level) - 1 - i]
                    g.want_break = True
                    return g
            for g in level:
                g.want_break = True
            del level[:]
        return None

    def _emit_group(self, g):
        while g.breaks:
            x = self.buffer.popleft()
            self.output_width = x.emit(self, self.output_width)
            self.buffer_width -= x.width
        while self.buffer and isinstance(self.buffer[0], _Run):
            x = self.buffer.popleft()
            self.output_width = x.emit(self, self.output_width)
            self.buffer_width -= x.width

    def _fit(self):
        while self.max_width < self.output_width + self.buffer_width:
            g = self._outermost()
            if g is None:
                return
            self._emit_group(g)

    # -- the API used by printers
    def text(self, obj):
        width = len(obj)
        if self.buffer:
            run = self.buffer[-1]
            if not isinstance(run, _Run):
                run = _Run()
                self.buffer.append(run)
            run.parts.append(obj)
            run.width += width
            self.buffer_width += width
            self._fit()
        else:
            self.out.append(obj)
            self.output_width += width

    def breakable(self, sep=" "):
        g = self._stack[-1]
        if g.want_break:
            self.flush()
            self.out.append(self.newline + " " * self.indentation)
            self.output_width = self.indentation
            self.buffer_width = 0
        else:
            self.buffer.append(_Break(sep, self))
            self.buffer_width += len(sep)
            self._fit()

    def break_(self):
        g = self._outermost()
        if g is not None:
            self._emit_group(g)
        self.flush()
        self.out.append(self.newline + " " * self.indentation)
        self.output_width = self.indentation
        self.buffer_width = 0

    def begin_group(self, indent=0, open=""):
        if open:
            self.text(open)
        g = _Group(self._stack[-1].depth + 1)
        self._stack.append(g)
        self._enqueue(g)
        self.indentation += indent

    def end_group(self, dedent=0, close=""):
        self.indentation -= dedent
        g = self._stack.pop()
        if not g.breaks:
            self._unqueue(g)
        if close:
            self.text(close)

    @contextmanager
    def group(self, indent=0, open="", close=""):
        self.begin_group(indent, open)
        try:
            yield
        finally:
            self.end_group(indent, close)

    @contextmanager
    def indent(self, indent):
        self.indentation += indent
        try:
            yield
        finally:
            self.indentation -= indent

    def flush(self):
        for x in self.buffer:
            self.output_width += x.emit(self, self.output_width)
        self.buffer.clear()
        self.buffer_width = 0

    def _enumerate(self, seq):
        for i, x in enumerate(seq):
            if self.max_seq_length and i >= self.max_seq_length:
                self.text(",")
                self.breakable()
                self.text("...")
                return
            yield i, x

    def getvalue(self):
        self.flush()
        return "".join(self.out)

    # -- dispatch
    def pretty(self, obj):
        oid = id(obj)
        cycle = oid in self._seen
        self._seen.append(oid)
        self.begin_group()
        try:
            fn = self.singleton_pprinters.get(oid)
            if fn is not None:
                return fn(obj, self, cycle)
            cls = _class_of(obj)
            for c in _mro(cls):
                fn = self.type_pprinters.get(c)
                if fn is None:
                    fn = self._deferred(c)
                if fn is not None:
                    return fn(obj, self, cycle)
                d = c.__dict__
                if "_repr_pretty_" in d:
                    meth = c._repr_pretty_
                    if callable(meth):
                        return meth(obj, self, cycle)
                if c is not object and callable(d.get("__repr__")):
                    return _repr_lines(obj, self, cycle)
            return _default(obj, self, cycle)
        finally:
            self.end_group()
            self._seen.pop()

    def _deferred(self, cls):
        if not self.deferred_pprinters:
            return None
        key = (getattr(cls, "__module__", None), getattr(cls, "__name__", None))
        fn = self.deferred_pprinters.get(key)
        if fn is not None and self.deferred_pprinters is not _DEFERRED_PRINTERS:
            del self.deferred_pprinters[key]
            self.type_pprinters[cls] = fn
        return fn


def _class_of(obj):
    try:
        c = obj.__class__
    except Exception:
        c = None
    return c or type(obj)


def _mro(cls):
    m = getattr(cls, "__mro__", None)
    return m if m is not None else (cls,)


# -- printers ------------------------------------------------------------------------

def _repr_lines(obj, p, cycle):
    """repr(obj), its lines kept apart (continuation lines get the indent)."""
    lines = repr(obj).splitlines()
    with p.group():
        for i, line in enumerate(lines):
            if i:
                p.break_()
            p.text(line)


def _default(obj, p, cycle):
    cls = _class_of(obj)
    if getattr(cls, "__repr__", None) is not object.__repr__:
        return _repr_lines(obj, p, cycle)
    p.begin_group(1, "<")
    p.pretty(cls)
    p.text(" at 0x%x" % id(obj))
    if cycle:
        p.text(" ...")
    p.end_group(1, ">")


def _sequence(opening, closing):
    def printer(obj, p, cycle):
        if cycle:
            return p.text(opening + "..." + closing)
        n = len(opening)
        p.begin_group(n, opening)
        for i, x in p._enumerate(obj):
            if i:
                p.text(",")
                p.breakable()
            p.pretty(x)
        if len(obj) == 1 and isinstance(obj, tuple):
            p.text(",")
        p.end_group(n, closing)
    return printer


def _sorted(items):
    try:
        return sorted(items)
    except Exception:
        try:
            return sorted(items, key=str)
        except Exception:
            return list(items)


def _set(opening, closing):
    def printer(obj, p, cycle):
        if cycle:
            return p.text(opening + "..." + closing)
        if not obj:
            return p.text(type(obj).__name__ + "()")
        n = len(opening)
        p.begin_group(n, opening)
        items = obj if p.max_seq_length and len(obj) >= p.max_seq_length else _sorted(obj)
        for i, x in p._enumerate(items):
            if i:
                p.text(",")
                p.breakable()
            p.pretty(x)
        p.end_group(n, closing)
    return printer


def _mapping(opening, closing):
    def printer(obj, p, cycle):
        if cycle:
            return p.text("{...}")
        n = len(opening)
        p.begin_group(n, opening)
        for i, k in p._enumerate(obj.keys()):
            if i:
                p.text(",")
                p.breakable()
            p.pretty(k)
            p.text(": ")
            p.pretty(obj[k])
        p.end_group(n, closing)
    return printer


class _Call:
    """Prints as name(arg, ..., key=value) with breaks between the arguments."""

    def __init__(self, name, args=(), kwargs=None):
        self.name, self.args, self.kwargs = name, args, kwargs or {}

    def _repr_pretty_(self, p, cycle):
        first = True
        prefix = self.name + "("
        with p.group(len(prefix), prefix, ")"):
            for a in self.args:
                if not first:
                    p.text(",")
                    p.breakable()
                first = False
                p.pretty(a)
            for k, v in self.kwargs.items():
                if not first:
                    p.text(",")
                    p.breakable()
                first = False
                with p.group(len(k) + 1, k + "="):
                    p.pretty(v)


class _Raw:
    def __init__(self, text):
        self.text = text

    def _repr_pretty_(self, p, cycle):
        p.text(self.text)


def _raw_string(s):
    r = repr(s)
    return "r" + r.replace("\\\\", "\\")


_RE_FLAGS = ("TEMPLATE", "IGNORECASE", "LOCALE", "MULTILINE", "DOTALL", "UNICODE", "VERBOSE", "DEBUG")


def _re_pattern(obj, p, cycle):
    args = [_Raw(_raw_string(obj.pattern))]
    if obj.flags:
        names = [("re." + f) for f in _RE_FLAGS if hasattr(re, f) and obj.flags & getattr(re, f)]
        args.append(_Raw("|".join(names)))
    p.pretty(_Call("re.compile", args))


def _type(obj, p, cycle):
    # a metaclass with its own __repr__ decides
    first = [m for m in _mro(type(obj)) if "__repr__" in vars(m)][:1]
    if first != [type]:
        return _repr_lines(obj, p, cycle)
    mod = getattr(obj, "__module__", None)
    try:
        name = obj.__qualname__
        if not isinstance(name, str):
            raise TypeError
    except Exception:
        name = obj.__name__
        if not isinstance(name, str):
            name = "<unknown type>"
    p.text(name if mod in (None, "__builtin__", "builtins", "exceptions") else mod + "." + name)


def _function(obj, p, cycle):
    name = getattr(obj, "__qualname__", obj.__name__)
    mod = obj.__module__
    if mod and mod not in ("__builtin__", "builtins", "exceptions"):
        name = mod + "." + name
    try:
        name += str(inspect.signature(obj))
    except ValueError:
        pass
    p.text("<function %s>" % name)


def _exception(obj, p, cycle):
    cls = obj.__class__
    name = getattr(cls, "__qualname__", cls.__name__)
    if cls.__module__ not in ("exceptions", "builtins"):
        name = "%s.%s" % (cls.__module__, name)
    p.pretty(_Call(name, getattr(obj, "args", ())))


def _super(obj, p, cycle):
    p.begin_group(8, "<super: ")
    p.pretty(obj.__thisclass__)
    p.text(",")
    p.breakable()
    p.pretty(obj.__self__)
    p.end_group(8, ">")


def _namespace(obj, p, cycle):
    if cycle:
        p.pretty(_Call("namespace", [_Raw("...")]))
    else:
        p.pretty(_Call("namespace", (), obj.__dict__))


def _ctor(make_args):
    def printer(obj, p, cycle):
        name = obj.__class__.__name__
        if cycle:
            return p.pretty(_Call(name, [_Raw("...")]))
        args, kwargs = make_args(obj)
        p.pretty(_Call(name, args, kwargs))
    return printer


_TYPE_PRINTERS = {
    int: _repr_lines,
    float: _repr_lines,
    str: _repr_lines,
    tuple: _sequence("(", ")"),
    list: _sequence("[", "]"),
    dict: _mapping("{", "}"),
    set: _set("{", "}"),
    frozenset: _set("frozenset({", "})"),
    super: _super,
    re.Pattern: _re_pattern,
    type: _type,
    types.FunctionType: _function,
    types.BuiltinFunctionType: _function,
    types.MethodType: _repr_lines,
    types.SimpleNamespace: _namespace,
    datetime.datetime: _repr_lines,
    datetime.timedelta: _repr_lines,
    BaseException: _exception,
    types.MappingProxyType: _mapping("mappingproxy({", "})"),
    slice: _repr_lines,
    range: _repr_lines,
    bytes: _repr_lines,
}
if type(os.environ) is not dict:
    _TYPE_PRINTERS[type(os.environ)] = _mapping("environ{", "}")

_DEFERRED_PRINTERS = {
    ("collections", "defaultdict"): _ctor(lambda o: ((o.default_factory, dict(o)), None)),
    ("collections", "OrderedDict"): _ctor(lambda o: (([list(o.items())] if len(o) else []), None)),
    ("collections", "deque"): _ctor(lambda o: ((list(o),), {"maxlen": o.maxlen} if o.maxlen is not None else None)),
    ("collections", "Counter"): _ctor(lambda o: (([dict(o)] if len(o) else []), None)),
    ("collections", "UserList"): _ctor(lambda o: ((o.data,), None)),
}

_SINGLETONS = dict.fromkeys(map(id, [None, True, False, Ellipsis, NotImplemented]), _repr_lines)


# -- entry points ----------------------------------------------------------------------

def pretty(obj, max_width=79, max_seq_length=MAX_SEQ_LENGTH):
    """text/plain of obj, as IPython's pretty printer writes it."""
    if type(obj) in _SIMPLE:
        # the common results: repr is the answer
        return repr(obj)
    p = Printer(max_width=max_width, max_seq_length=max_seq_length)
    p.pretty(obj)
    return p.getvalue()


class PlainText:
    """The text/plain formatter's state (IPython's PlainTextFormatter API):
    printers registered by type or by name, precision, max width."""

    def __init__(self):
        self.type_printers = dict(_TYPE_PRINTERS)
        self.deferred_printers = dict(_DEFERRED_PRINTERS)
        self.singleton_printers = dict(_SINGLETONS)
        self.max_width = 79
        self.max_seq_length = MAX_SEQ_LENGTH
        self.newline = "\n"
        self.pprint = True
        self.verbose = False
        self.float_format = "%r"
        self._float_precision = ""

    @property
    def float_precision(self):
        return self._float_precision

    @float_precision.setter
    def float_precision(self, value):
        value = str(value)
        if "%" in value:
            value % 3.14159
            fmt = value
        elif value:
            i = int(value)
            if i < 0:
                raise ValueError("int precision must be non-negative, not %r" % i)
            fmt = "%%.%if" % i
        else:
            fmt = "%r"
        import sys
        if "numpy" in sys.modules:
            sys.modules["numpy"].set_printoptions(precision=int(value) if value and "%" not in value else 8)
        self._float_precision = value
        self.float_format = fmt
        if fmt == "%r":
            self.type_printers[float] = _repr_lines
        else:
            self.type_printers[float] = lambda obj, p, cycle: p.text(self.float_format % obj)

    def __call__(self, obj):
        if not self.pprint:
            return repr(obj)
        t = type(obj)
        if t in _SIMPLE and self.type_printers.get(t) is _TYPE_PRINTERS.get(t) \
                and self.singleton_printers.get(id(obj)) is _SINGLETONS.get(id(obj)):
            return repr(obj)  # the common results: repr is the answer
        p = Printer(self.max_width, self.newline, self.max_seq_length, self.type_printers,
                    self.deferred_printers, self.singleton_printers, self.verbose)
        p.pretty(obj)
        return p.getvalue()
