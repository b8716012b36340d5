"""Tracebacks of the user's code only, in the IPython style (ANSI colours)."""
import linecache
import traceback

_RED = "\x1b[0;31m"
_GREEN = "\x1b[0;32m"
_CYAN = "\x1b[0;36m"
_RESET = "\x1b[0m"


def _user_frames(tb, skip_file):
    frames = traceback.extract_tb(tb)
    # drop the kernel's own frames before the first frame of user code
    i = 0
    while i < len(frames) and (frames[i].filename == skip_file or frames[i].filename.startswith("<cellbox>/")):
        i += 1
    return frames[i:]


def _frame_name(filename):
    if filename.startswith("<cell-") and filename.endswith(">"):
        return "Cell In[%s]" % filename[6:-1]
    return filename


def format_exception(exc, skip_frames_of=None):
    """-> list of strings, one per traceback entry (as Jupyter frontends expect)."""
    etype = type(exc)
    out = []
    if isinstance(exc, SyntaxError):
        fn = exc.filename or "<unknown>"
        head = "%s  File %s%s%s, line %s%s\n" % (
            "", _GREEN, _frame_name(fn), _RESET, exc.lineno, "")
        lines = [head]
        if exc.text:
            text = exc.text.rstrip("\n")
            stripped = text.lstrip()
            lines.append("    %s\n" % stripped)
            if exc.offset:
                caret = max(0, exc.offset - 1 - (len(text) - len(stripped)))
                lines.append("    %s%s^%s\n" % (" " * caret, _RED, _RESET))
        lines.append("%s%s%s: %s" % (_RED, etype.__name__, _RESET, exc.msg))
        return ["".join(lines)]
    out.append("%s%s%s" % (_RED, "-" * 75, _RESET))
    out.append("%s%s%s%sTraceback (most recent call last)" % (
        _RED, etype.__name__, _RESET, " " * max(1, 42 - len(etype.__name__))))
    for fr in _user_frames(exc.__traceback__, skip_frames_of):
        name = _frame_name(fr.filename)
        loc = "%s%s%s, line %d" % (_GREEN, name, _RESET, fr.lineno) if name.startswith("Cell") else \
            "File %s%s:%d%s, in %s%s%s" % (_GREEN, fr.filename, fr.lineno, _RESET, _CYAN, fr.name, _RESET)
        block = [loc]
        line = linecache.getline(fr.filename, fr.lineno).rstrip("\n")
        if line:
            block.append("%s----> %d%s %s" % (_GREEN, fr.lineno, _RESET, line.strip()))
        out.append("\n".join(block))
    msg = str(exc)
    out.append("%s%s%s: %s" % (_RED, etype.__name__, _RESET, msg) if msg else "%s%s%s" % (_RED, etype.__name__, _RESET))
    return out
