"""Completion and is_complete for the cellbox kernel.

A fast built-in completer handles the common cases: names, attributes of
name chains (no code is run: only getattr on existing objects), keywords,
module names after import/from, dict keys and file paths in strings.
jedi (Debian's python3-jedi) is consulted only when the built-in one finds
nothing, so completion stays fast. Positions count code points.
"""
import builtins
import keyword
import os
import re
import sys

_ID = re.compile(r"[A-Za-z_\u00c0-\uffff][\w\u00c0-\uffff]*$")
# A chain starts where a name can (not inside one, not after a dot): searching
# from every position of a long identifier made completion quadratic (a
# 20,000-character name took 2.5 s, 100,000 over a minute, the shell blocked).
_CHAIN = re.compile(r"(?<![\w.])((?:[A-Za-z_][\w]*\.)*)([A-Za-z_]\w*)?$")
_IMPORT = re.compile(r"^\s*import\s+([\w.]*(?:\s*,\s*[\w.]*)*)$")
_FROM = re.compile(r"^\s*from\s+([\w.]*)$")
_FROM_IMPORT = re.compile(r"^\s*from\s+([\w.]+)\s+import\s+(?:\(?\s*(?:[\w]+\s*,\s*)*)([\w]*)$")
_DICT_KEY = re.compile(r"(?<![\w.])((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)\[\s*(['\"]?)([^'\"\]]*)$")
_MAGIC = re.compile(r"^\s*(%%?)(\w*)$")
_SHELL_ARG = re.compile(r"^\s*(!!?\s*\S+|%%?\w+)\s+(?:.*\s)?([^\s'\"]*)$")

# Magics whose argument is a path, never code (the aliases are too): Tab
# after `%cd su` offers sub/, not sum and super
_DIR_MAGICS = {"cd": (), "pushd": ()}
_RUNNABLE = (".py", ".ipy", ".ipynb")
_PATH_MAGICS = {"cd", "pushd", "run", "load", "loadpy", "pycat", "less", "more", "writefile", "edit",
                "notebook", "save", "logstart", "bookmark"}

_module_cache = None


def _top_level_modules():
    """Names importable at top level, from sys.path (scanned once)."""
    global _module_cache
    if _module_cache is not None:
        return _module_cache
    names = set(sys.builtin_module_names)
    suffixes = (".py", ".pyc", ".so", ".pyd")
    for d in sys.path:
        d = d or "."
        try:
            entries = os.scandir(d)
        except OSError:
            continue
        with entries:
            for e in entries:
                n = e.name
                if n.startswith(".") or n == "__pycache__":
                    continue
                if n.endswith(suffixes):
                    base = n.split(".", 1)[0]
                    if base.isidentifier():
                        names.add(base)
                elif "." not in n and n.isidentifier():
                    try:
                        if e.is_dir():
                            names.add(n)
                    except OSError:
                        pass
    names.discard("__init__")
    _module_cache = sorted(names)
    return _module_cache


def _submodules(pkg_name):
    try:
        mod = __import__(pkg_name, fromlist=["_"])
    except BaseException:
        return []
    out = set()
    for d in getattr(mod, "__path__", None) or []:
        try:
            for n in os.listdir(d):
                if n.startswith((".", "_")) and n != "__init__.py":
                    continue
                if n.endswith((".py", ".so")):
                    base = n.split(".", 1)[0]
                    if base != "__init__" and base.isidentifier():
                        out.add(base)
                elif n.isidentifier() and os.path.isdir(os.path.join(d, n)):
                    out.add(n)
        except OSError:
            continue
    return sorted(out)


def _in_string(line):
    """If the cursor is inside an open string literal: (quote, start index of its body)."""
    quote, start, i = None, None, 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c == "#":
            return None
        elif c in "'\"":
            quote, start = c, i + 1
        i += 1
    return (quote, start) if quote else None


class Completer:
    def __init__(self, shell):
        self.shell = shell
        self.use_jedi = True
        self._jedi = None

    # -- entry point ------------------------------------------------------------
    def complete(self, code, cursor_pos):
        if cursor_pos is None:
            cursor_pos = len(code)
        cursor_pos = max(0, min(cursor_pos, len(code)))
        before = code[:cursor_pos]
        line = before.rsplit("\n", 1)[-1]
        matches, start = self._builtin(line, cursor_pos)
        if not matches and self.use_jedi:
            jm = self._jedi_complete(code, cursor_pos)
            if jm is not None:
                matches, start = jm
        end = cursor_pos
        # extend over the rest of the identifier under the cursor
        m = re.match(r"\w*", code[cursor_pos:])
        if m and matches:
            end = cursor_pos + m.end()
        seen = set()
        uniq = [x for x in matches if not (x in seen or seen.add(x))]
        return {"status": "ok", "matches": uniq, "cursor_start": start, "cursor_end": end,
                "metadata": {}}

    # -- the built-in completer ---------------------------------------------------
    def _builtin(self, line, cursor_pos):
        line_start = cursor_pos - len(line)
        if "\\" in line:
            r = _backslash_matches(line, cursor_pos)
            if r is not None:
                return r
        m = _SHELL_ARG.match(line)
        if m:   # `!cmd ARG` and `%magic ARG`: a path, as IPython's file matcher
            word = m.group(2)
            magic = m.group(1).lstrip("%") if m.group(1).startswith("%") else None
            if magic in _DIR_MAGICS or magic == "run":
                # IPython's custom completers (cd_completer,
                # magic_run_completer): directories, and for %run the files
                # it runs; the plain file matcher when none fits
                found, start = self._paths(word, cursor_pos, _DIR_MAGICS.get(magic, _RUNNABLE))
                if found:
                    return found, start
            if magic is not None and (magic in _PATH_MAGICS or magic in self.shell.magics.aliases):
                return self._paths(word, cursor_pos)   # a file name, never code (%ls su: not sum)
            if magic is not None and not word.startswith(("/", "~", ".")) and "/" not in word:
                # a magic's argument may be code (%time np.ar): Python first
                rest = line[len(m.group(1)) + len(line) - len(line.lstrip()):]
                found, start = self._builtin(rest, cursor_pos)
                if found:
                    return found, start
            return self._paths(word, cursor_pos)
        s = _in_string(line)
        if s is not None:
            quote, body_start = s
            dm = _DICT_KEY.search(line)
            if dm:
                return self._dict_keys(dm, cursor_pos)
            return self._paths(line[body_start:], cursor_pos)
        m = _MAGIC.match(line)
        if m:
            pre, word = m.groups()
            lines, cells = self.shell.magics.names()
            # as IPython: '%' offers line magics and cell magics, '%%' cell magics
            out = [] if pre == "%%" else ["%" + n for n in lines if n.startswith(word)]
            out += ["%%" + n for n in cells if n.startswith(word)]
            return out, cursor_pos - len(word) - len(pre)
        m = _IMPORT.match(line)
        if m:
            word = re.split(r"[\s,]+", m.group(1))[-1]
            return self._modules(word, cursor_pos)
        m = _FROM.match(line)
        if m:
            return self._modules(m.group(1), cursor_pos)
        m = _FROM_IMPORT.match(line)
        if m:
            pkg, word = m.groups()
            names = set(_submodules(pkg))
            try:
                mod = sys.modules.get(pkg) or __import__(pkg, fromlist=["_"])
                names.update(n for n in dir(mod) if not n.startswith("_"))
            except BaseException:
                pass
            return sorted(n for n in names if n.startswith(word)), cursor_pos - len(word)
        dm = _DICT_KEY.search(line)
        if dm:
            return self._dict_keys(dm, cursor_pos)
        m = _CHAIN.search(line)
        if not m:
            return [], cursor_pos
        chain, word = m.group(1), m.group(2) or ""
        if chain:
            # "(...).x" or "x[0].y" are for jedi; only plain name chains here
            prev = line[:m.start()]
            if prev.endswith((")", "]", "'", '"')):
                return [], cursor_pos
            obj = self._resolve(chain[:-1])
            if obj is _MISSING:
                return [], cursor_pos
            names = self._attrs(obj)
            if not word.startswith("_"):
                names = [n for n in names if not n.startswith("_")]
            elif not word.startswith("__"):
                names = [n for n in names if not n.startswith("__")]
            return sorted(n for n in names if n.startswith(word)), cursor_pos - len(word)
        if not word:
            return [], cursor_pos
        ns = self.shell.user_ns
        pool = set(ns) | set(dir(builtins)) | set(keyword.kwlist)
        out = [n for n in pool if n.startswith(word)]
        if not word.startswith("_"):
            out = [n for n in out if not n.startswith("_")]
        return sorted(out), cursor_pos - len(word)

    def _modules(self, dotted, cursor_pos):
        if "." in dotted:
            pkg, _, word = dotted.rpartition(".")
            subs = _submodules(pkg)
            return [pkg + "." + n for n in subs if n.startswith(word)], cursor_pos - len(dotted)
        return [n for n in _top_level_modules() if n.startswith(dotted)], cursor_pos - len(dotted)

    def _resolve(self, chain):
        return resolve_name(self.shell.user_ns, chain)

    @staticmethod
    def _attrs(obj):
        try:
            names = set(dir(obj))
        except Exception:
            names = set()
        return list(names)

    def _dict_keys(self, m, cursor_pos):
        expr, quote, prefix = m.groups()
        obj = self._resolve(expr)
        if obj is _MISSING:
            return [], cursor_pos
        try:
            keys = list(obj.keys()) if hasattr(obj, "keys") else []
        except Exception:
            return [], cursor_pos
        out = []
        q = quote or "'"
        for k in keys:
            if isinstance(k, str) and k.startswith(prefix):
                out.append(k if quote else "%s%s%s" % (q, k, q))
            elif not quote and isinstance(k, (int, float)) and str(k).startswith(prefix):
                out.append(str(k))
        return out, cursor_pos - len(prefix)

    def _paths(self, text, cursor_pos, suffixes=None):
        """Paths starting with text; suffixes: only directories and the
        files ending so (() for directories only)."""
        path = os.path.expanduser(text)
        d, base = os.path.split(path)
        try:
            names = os.listdir(d or ".")
        except OSError:
            return [], cursor_pos
        out = []
        head = text[:len(text) - len(base)]
        for n in sorted(names):
            if not n.startswith(base) or (n.startswith(".") and not base.startswith(".")):
                continue
            full = os.path.join(d or ".", n)
            isdir = os.path.isdir(full)
            if suffixes is not None and not isdir and not n.endswith(suffixes):
                continue
            out.append(head + n + ("/" if isdir else ""))
        return out, cursor_pos - len(text)

    # -- jedi fallback ---------------------------------------------------------------
    def _jedi_complete(self, code, cursor_pos):
        try:
            import jedi
        except ImportError:
            return None
        before = code[:cursor_pos]
        line = before.count("\n") + 1
        col = len(before.rsplit("\n", 1)[-1])
        try:
            script = jedi.Interpreter(code, [self.shell.user_ns])
            comps = script.complete(line, col)
        except Exception:
            return None
        if not comps:
            return None
        n = len(comps[0].name) - len(comps[0].complete)
        return [c.name for c in comps], cursor_pos - n


_latex = None
_names = None


def _latex_symbols():
    """IPython's table of LaTeX names (\\alpha -> U+03B1), read from its file
    without importing IPython (that takes 0.2 s); {} without IPython."""
    global _latex
    if _latex is None:
        _latex = {}
        try:
            import importlib.machinery
            import importlib.util
            spec = importlib.machinery.PathFinder.find_spec("IPython")
            path = os.path.join(os.path.dirname(spec.origin), "core", "latex_symbols.py")
            mod_spec = importlib.util.spec_from_file_location("_cellbox_latex_symbols", path)
            mod = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(mod)
            _latex = dict(mod.latex_symbols)
        except Exception:
            pass
    return _latex


def _unicode_names():
    global _names
    if _names is None:
        import unicodedata
        name = unicodedata.name
        _names = [n for n in (name(chr(c), "") for c in range(0x20, 0x110000)) if n]
    return _names


def _backslash_matches(line, cursor_pos):
    """IPython's backslash completions: \\alpha -> α (and \\al -> the LaTeX
    names), \\GREEK SMALL LETTER ALPHA -> α (and a partial name -> the
    Unicode names). None when the text after the last backslash is neither."""
    s = line[line.rfind("\\"):]
    latex = _latex_symbols()
    if s in latex:
        return [latex[s]], cursor_pos - len(s)
    found = [k for k in latex if k.startswith(s)]
    if found:
        return found, cursor_pos - len(s)
    name = s[1:]
    if not name or not name[0].isalpha() or not name.upper() == name:
        return None
    import unicodedata
    try:
        return [unicodedata.lookup(name)], cursor_pos - len(s)
    except KeyError:
        pass
    found = [n for n in _unicode_names() if n.startswith(name)]
    return (found, cursor_pos - len(name)) if found else None


MISSING = _MISSING = object()


def resolve_name(ns, dotted):
    """The object a dotted name chain names in ns (then builtins), or
    MISSING. Only lookups and getattr: no user code is called (beyond
    properties), so completion and inspection are safe."""
    parts = dotted.split(".")
    if parts[0] in ns:
        obj = ns[parts[0]]
    elif hasattr(builtins, parts[0]):
        obj = getattr(builtins, parts[0])
    else:
        return MISSING
    for p in parts[1:]:
        try:
            obj = getattr(obj, p)
        except Exception:
            return MISSING
    return obj


def is_complete(code):
    """is_complete_reply content, by IPython's check_complete rules (what
    ipykernel answers): the cleanup transforms, a cell magic ends with an
    empty line, an open bracket, string or backslash is incomplete, a line
    ending in ':' opens a block (indent + 4), else the compiler decides
    (top-level await allowed)."""
    import ast
    import codeop
    import tokenize
    from cellbox._transform import cleanup_lines, transform_cell
    ends_with_newline = False
    for ch in reversed(code):
        if ch == "\n":
            ends_with_newline = True
            break
        if ch.strip():
            break
    if not ends_with_newline:
        code += "\n"
    lines = code.splitlines(True)
    if not lines:
        return {"status": "complete"}

    def incomplete(indent=None):
        if indent is None:
            m = re.match(r"^[ \t]+", lines[-1])
            indent = len(m.group(0).replace("\t", " " * 4)) if m else 0
        return {"status": "incomplete", "indent": " " * indent}

    if lines[-1].endswith("\\"):
        return incomplete()
    lines = cleanup_lines(lines)
    if not lines:
        return {"status": "complete"}
    if lines[0].startswith("%%"):
        return incomplete() if lines[-1].strip() else {"status": "complete"}
    try:
        src = transform_cell("".join(lines)) if any(c in code for c in "%!?") else "".join(lines)
    except SyntaxError:
        return {"status": "invalid"}
    lines = src.splitlines(True)
    by_line = [[]]
    depth = 0
    try:
        for tok in tokenize.generate_tokens(iter(lines).__next__):
            by_line[-1].append(tok)
            if tok.type == tokenize.NEWLINE or (tok.type == tokenize.NL and depth <= 0):
                by_line.append([])
            elif tok.string in ("(", "[", "{"):
                depth += 1
            elif tok.string in (")", "]", "}") and depth > 0:
                depth -= 1
    except tokenize.TokenError:
        pass   # an open string or bracket at the end
    except SyntaxError:   # a dedent to no outer level
        return {"status": "invalid"}
    if not by_line[-1]:
        by_line.pop()
    if len(lines) == 1 and by_line and _sunken(by_line[0]):
        return {"status": "invalid"}
    if not by_line:
        return incomplete()
    if by_line[-1][-1].type not in (tokenize.ENDMARKER, tokenize.ERRORTOKEN):
        return incomplete()   # inside a multi-line string or expression
    ends = (tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)
    last_line = None
    if {t.type for t in by_line[-1]} in ({tokenize.DEDENT, tokenize.ENDMARKER}, {tokenize.ENDMARKER}) \
            and len(by_line) > 1:
        last_line = by_line.pop()
    while by_line[-1] and by_line[-1][-1].type in ends:
        by_line[-1].pop()
    if not by_line[-1]:
        return incomplete()
    if by_line[-1][-1].string == ":":   # the last line opens a block
        ix = 0
        while by_line[-1][ix].type in (tokenize.INDENT, tokenize.DEDENT):
            ix += 1
        return incomplete(by_line[-1][ix].start[1] + 4)
    if by_line[-1][0].line.endswith("\\"):
        return {"status": "incomplete"}
    compiler = codeop.CommandCompiler()
    compiler.compiler.flags |= getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0x2000)
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error", SyntaxWarning)
            res = compiler("".join(lines), "<input>", "exec")
    except (SyntaxError, OverflowError, ValueError, TypeError, MemoryError, SyntaxWarning):
        return {"status": "invalid"}
    if res is None:
        return incomplete()
    if last_line and last_line[0].type == tokenize.DEDENT and not ends_with_newline:
        return incomplete()
    return {"status": "complete"}


def _sunken(tokens):
    """More closing brackets than opening ones, at some point."""
    depth = 0
    for tok in tokens:
        if tok.string in ("(", "[", "{"):
            depth += 1
        elif tok.string in (")", "]", "}"):
            depth -= 1
            if depth < 0:
                return True
    return False
