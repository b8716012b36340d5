"""IPython-style magics for the cellbox kernel.

Line magics (``%name args``) and cell magics (``%%name args`` + body) are
methods named ``line_<name>`` / ``cell_<name>``. An unknown magic raises
UsageError (a clear error, never a SyntaxError). Each magic behaves as
IPython's of the same name under ipykernel: same output, same payloads,
same UsageError wording; tests/kernel_magics.py compares them.

Heavy modules (pdb and IPython's debugger, cProfile, argparse) are
imported by the magics that need them, never when the kernel starts.
"""
import ast
import os
import re
import shlex
import string
import subprocess
import sys
import time

import _cellbox_c


class UsageError(Exception):
    """Wrong use of a magic."""


UsageError.__module__ = "builtins"  # shows as "UsageError", as in IPython


def _no_var_expand(fn):
    """IPython's @no_var_expand: the magic gets its line as typed ($x kept)."""
    fn._ipython_magic_no_var_expand = True
    return fn


def _needs_local_scope(fn):
    """IPython's @needs_local_scope: the magic gets local_ns, the namespace
    it was used in (a function's locals)."""
    fn.needs_local_scope = True
    return fn


def _internal(frame):
    """A frame of cellbox's own Python (not the user's code)."""
    name = frame.f_globals.get("__name__") or ""
    return name == "cellbox" or name.startswith("cellbox.")


class _VarExpander(string.Formatter):
    """The formatter behind IPython's var_expand: a {field} is a whole
    Python expression (slices and calls too), and $name or $a.b in the
    literal text is a field as well, except inside single quotes."""

    _dollar = re.compile(r"(.*?)\$(\$?[\w.]+)(?=([^']*'[^']*')*[^']*$)")

    def parse(self, text):
        for literal, field, spec, conv in string.Formatter.parse(self, text):
            done, carried = 0, ""
            for m in self._dollar.finditer(literal):
                before, name = m.group(1), m.group(2)
                if name.startswith("$"):      # $$x: a literal $x
                    carried += before + name
                else:
                    yield carried + before, name, "", None
                    carried = ""
                done = m.end()
            yield carried + literal[done:], field, spec, conv

    def vformat(self, text, args, kwargs):
        out = []
        for literal, field, spec, conv in self.parse(text):
            out.append(literal)
            if field is None:
                continue
            expr = field + ":" + spec if spec else field   # {x[1:3]} is a slice, not a spec
            value = self.convert_field(eval(expr, dict(kwargs)), conv)
            out.append(self.format_field(value, ""))
        return "".join(out)


def _arg_split(s, posix=False):
    """IPython's arg_split: a shell-like split that keeps quotes unless posix."""
    lex = shlex.shlex(s, posix=posix)
    lex.whitespace_split = True
    lex.commenters = ""
    return list(lex)


def _parse_options(arg_str, opt_str, long_opts=(), list_all=False, posix=True, mode="string",
                   preserve_non_opts=False):
    """IPython's Magics.parse_options: getopt over the line -> (options, rest).
    Options are {letter: value}, a list for a repeated option (always with
    list_all); rest is the remaining words joined by spaces, or their list
    when mode is "list". preserve_non_opts: rest is the line with the
    options' text taken out once each, as IPython does (spacing kept)."""
    import getopt
    opts = {}
    args = arg_str.split()
    remainder = arg_str
    if args:
        try:
            pairs, args = getopt.getopt(_arg_split(arg_str, posix), opt_str, list(long_opts))
        except getopt.GetoptError as e:
            raise UsageError('%s ( allowed: "%s" %s)' % (e.msg, opt_str, " ".join(long_opts))) from e
        for o, a in pairs:
            if mode == "string" and preserve_non_opts:
                remainder = remainder.replace(o, "", 1).replace(a, "", 1)
            o = o[2:] if o.startswith("--") else o[1:]
            if o not in opts:
                opts[o] = [a] if list_all else a
            elif isinstance(opts[o], list):
                opts[o].append(a)
            else:
                opts[o] = [opts[o], a]
    if mode == "string":
        return opts, (remainder.lstrip() if preserve_non_opts else " ".join(args))
    return opts, args


def _arg_parser(prog):
    """An argparse parser whose errors are UsageErrors (IPython's
    magic_arguments)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError(message)

    return Parser(prog=prog, add_help=False)


# IPython's default aliases on Linux (%alias lists them); `ls` is cellbox's
# own %ls, which shows no colours
_DEFAULT_ALIASES = (
    ("cat", "cat"), ("cp", "cp"), ("ldir", "ls -F -o --color %l | grep /$"),
    ("lf", "ls -F -o --color %l | grep ^-"), ("lk", "ls -F -o --color %l | grep ^l"),
    ("ll", "ls -F -o --color"), ("ls", "ls -F --color=never"),
    ("lx", "ls -F -o --color %l | grep ^-..x"), ("mkdir", "mkdir"), ("mv", "mv"),
    ("rm", "rm"), ("rmdir", "rmdir"),
)
_ALIAS_BLACKLIST = ("cd", "popd", "pushd", "dhist", "alias", "unalias")

# IPython's history range syntax: [~S/]N[-M or :M]
_RANGE_RE = re.compile(r"((?P<startsess>~?\d+)/)?(?P<start>\d+)?((?P<sep>[\-:])((?P<endsess>~?\d+)/)?(?P<end>\d+))?$")


def _hist_ranges(ranges_str):
    """IPython's extract_hist_ranges: (session, start, stop) of a history
    range string; session 0 is this one, stop None the end."""
    if ranges_str == "":
        return [(0, 1, None)]
    out = []
    for word in ranges_str.split():
        m = _RANGE_RE.match(word)
        if not m:
            continue
        start = m.group("start")
        if start:
            start = int(start)
            end = int(m.group("end")) if m.group("end") else start + 1
        elif m.group("startsess"):
            start, end = 1, None
        else:
            continue
        if m.group("sep") == "-":
            end += 1
        startsess = int((m.group("startsess") or "0").replace("~", "-"))
        out.append((startsess, start, end))
    return out



def _cpu_clock():
    """IPython's clock: user CPU seconds of this process (getrusage)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF)[0]


def _no_background(cmd):
    """IPython's refusal of `!cmd &`: its output is read from a terminal or a
    pipe until the command ends, so a background command would be cut off."""
    if cmd.rstrip().endswith("&"):
        raise OSError("Background processes not supported.")


def _user_shell():
    """The shell !cmd and !!cmd run in: $SHELL, as IPython (bash features
    such as {1..3} or printf '\\xff' work where the user's shell is bash),
    None (sh) when it is not set or not found."""
    import shutil
    name = os.environ.get("SHELL")
    return shutil.which(name) if name else None


def _fmt_time(t, precision=3):
    """IPython's _format_time: `precision` significant digits in the best
    unit; a minute or more as "1h 2min 3s" (up to the first part under a
    second)."""
    import math
    if t >= 60.0:
        parts, left = [], t
        for suffix, length in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            value = int(left / length)
            if value > 0:
                left = left % length
                parts.append("%d%s" % (value, suffix))
            if left < 1:
                break
        return " ".join(parts)
    units = ["s", "ms", "\xb5s", "ns"]
    scale = [1.0, 1e3, 1e6, 1e9]
    order = min(-int(math.floor(math.log10(t)) // 3), 3) if t > 0.0 else 3
    return "%.*g %s" % (precision, t * scale[order], units[order])


class Magics:
    """cellbox's own magics (methods) and the ones users and extensions
    register (IPython's register_magic_function / register_magics), which
    take precedence, as in IPython."""

    KINDS = ("line", "cell")

    def __init__(self, shell):
        self.shell = shell
        self.autoreload = None
        self.user = {"line": {}, "cell": {}}   # name -> callable
        self.user["cell"]["!"] = self.cell_sx  # %%! is %%sx, as in IPython
        self.aliases = {}                      # %alias name -> command
        for name, cmd in _DEFAULT_ALIASES:
            self._define_alias(name, cmd, check=False)
        self._rerunning = False

    # -- registry ------------------------------------------------------------
    def register(self, kind, name, fn):
        if kind not in ("line", "cell", "line_cell"):
            raise ValueError("magic_kind must be one of ['line', 'cell', 'line_cell'], %r given" % (kind,))
        if not callable(fn):
            raise TypeError("a magic must be callable, got %r" % (fn,))
        for k in (("line", "cell") if kind == "line_cell" else (kind,)):
            self.user[k][name] = fn

    def find(self, kind, name):
        """The callable behind %name (kind "line") or %%name (kind "cell"), or None."""
        fn = self.user[kind].get(name)
        if fn is None:
            fn = getattr(self, "%s_%s" % (kind, name), None)
        return fn

    def table(self):
        """{"line": {name: callable}, "cell": {...}}: IPython's magics_manager.magics."""
        out = {}
        for kind in self.KINDS:
            prefix = kind + "_"
            tab = {n[len(prefix):]: getattr(self, n) for n in dir(self) if n.startswith(prefix)}
            tab.update(self.user[kind])
            out[kind] = tab
        return out

    # -- dispatch ------------------------------------------------------------
    def _call(self, fn, args):
        # IPython's decorators: no_var_expand keeps $x and {x} as typed,
        # needs_local_scope passes the namespace the magic runs in (the
        # function's locals for a magic used in a function)
        ns, local_ns = self._scope()
        if not getattr(fn, "_ipython_magic_no_var_expand", False):
            args = (self._expand(args[0], ns),) + args[1:]
        if getattr(fn, "needs_local_scope", False):
            return fn(*args, local_ns=local_ns)
        return fn(*args)

    def _scope(self):
        """(names for $x and {expr}, the caller's local namespace): the user's
        code that called into cellbox, a cell (its namespace is user_ns) or
        a function of it (its locals over user_ns), as IPython's var_expand
        and get_local_scope see it."""
        user = self.shell.user_ns
        f = sys._getframe(1)
        while f is not None and _internal(f):
            f = f.f_back
        if f is None or f.f_locals is user:
            return user, user
        local = f.f_locals
        ns = dict(user)
        ns.update(local)
        return ns, local

    def run_line(self, name, line):
        fn = self.find("line", name)
        if fn is None:
            if self.find("cell", name) is not None:
                raise UsageError("Line magic function `%%%s` not found (But cell magic `%%%%%s` exists, "
                                 "did you mean that instead?)." % (name, name))
            raise UsageError("Line magic function `%%%s` not found." % name)
        return self._call(fn, (line,))

    def run_cell(self, name, line, cell):
        fn = self.find("cell", name)
        if fn is None:
            if self.find("line", name) is not None:
                raise UsageError("Cell magic `%%%%%s` not found (But line magic `%%%s` exists, "
                                 "did you mean that instead?)." % (name, name))
            raise UsageError("Cell magic `%%%%%s` not found." % name)
        return self._call(fn, (line, cell))

    def _expand(self, text, ns=None):
        """IPython's var_expand: $name and $name.attr (not inside single
        quotes; $$ is a $), {expr} evaluated ({{ and }} are braces), from
        the user namespace and the caller's locals. All or nothing: when a
        name is unknown or an expression fails, the text is left as typed
        (the shell then sees $HOME)."""
        if "$" not in text and "{" not in text and "}" not in text:
            return text
        if ns is None:
            ns = self._scope()[0]
        try:
            return _VarExpander().vformat(text, (), ns)
        except Exception:
            return text

    def names(self):
        tab = self.table()
        return sorted(tab["line"]), sorted(tab["cell"])

    # -- shell -------------------------------------------------------------------
    def system(self, cmd):
        """!cmd: run by the user's $SHELL (sh without one) on a
        pseudo-terminal, like IPython (pexpect): programs see a terminal,
        stderr is merged, lines end in \\r\\n, and the output streams as it
        comes."""
        import codecs
        import pty
        import signal
        _no_background(cmd)
        cmd = self._expand(cmd)
        _cellbox_c.flush()
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen([_user_shell() or "/bin/sh", "-c", cmd], stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True, close_fds=True)
        finally:
            os.close(slave)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        out = sys.stdout
        try:
            try:
                self._drain_pty(master, decoder, out)
                rc = p.wait()
            except KeyboardInterrupt:
                # like ^C on the terminal (and IPython, which types it): the
                # terminal echoes ^C, the command gets SIGINT and what it
                # prints on its way out is shown; the cell goes on
                out.write("^C\r\n")
                try:
                    os.killpg(p.pid, signal.SIGINT)
                    self._drain_pty(master, decoder, out, time.monotonic() + 1)
                    p.wait(0.2)
                except (OSError, subprocess.TimeoutExpired, KeyboardInterrupt):
                    try:
                        os.killpg(p.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    p.wait()
                rc = p.returncode
        finally:
            os.close(master)
        self.shell.user_ns["_exit_code"] = rc if rc >= 0 else rc
        return None

    @staticmethod
    def _drain_pty(master, decoder, out, deadline=None):
        """What a command writes to its terminal until it closes it (EOF)
        or the deadline (a time.monotonic(); None: none) passes."""
        import select
        while True:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([master], [], [], left)[0]:
                    break
            try:
                data = os.read(master, 65536)
            except OSError:   # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            out.write(decoder.decode(data))
        out.write(decoder.decode(b"", final=True))

    def getoutput(self, cmd):
        _no_background(cmd)
        cmd = self._expand(cmd)
        r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           executable=_user_shell())
        self.shell.user_ns["_exit_code"] = r.returncode
        return SList(r.stdout.decode("utf-8", "replace").splitlines())

    def line_sx(self, line, cell=None):
        """%sx CMD, %system CMD: the command's output lines (an SList), as
        !!CMD; %%sx [--out NAME] runs the cell's lines."""
        if cell is None:
            return self.getoutput(line)
        opts, _ = _parse_options(line, "", ("out=",))
        output = self.getoutput(cell)
        name = opts.get("out", opts.get("o"))
        if name:
            self.shell.user_ns[name] = output
            return None
        return output

    line_system = cell_system = cell_sx = line_sx

    # %%script and the shortcuts IPython's ScriptMagics defines (%%bash,
    # %%python3, %%perl, %%ruby...: a missing program is reported, as there)
    def cell_script(self, line, cell):
        """%%script [--out NAME] [--err NAME] [--no-raise-error] PROGRAM [ARGS]:
        run the cell with PROGRAM, its output streamed (or stored in NAME);
        a failing program raises CalledProcessError."""
        import signal
        parser = _arg_parser("%%script")
        parser.add_argument("--out", type=str)
        parser.add_argument("--err", type=str)
        parser.add_argument("--bg", action="store_true")
        parser.add_argument("--proc", type=str)
        parser.add_argument("--no-raise-error", action="store_false", dest="raise_error")
        args, cmd = parser.parse_known_args(_arg_split(line, posix=True))
        if not cmd:
            raise UsageError("%%script needs a program, e.g. %%script python3")
        if args.bg or args.proc:
            raise UsageError("%%script --bg/--proc (a script left running in the background) "
                             "is not available in cellbox")
        try:
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except FileNotFoundError:
            print("Couldn't find program: %r" % cmd[0])
            return None
        body = (cell if cell.endswith("\n") else cell + "\n").encode("utf8", "replace")
        try:
            out, err = _pump(p, body, capture_out=bool(args.out), capture_err=bool(args.err))
        except KeyboardInterrupt:
            # IPython's way: SIGINT, then SIGTERM, then SIGKILL; the cell goes on
            try:
                for how, stop in (("interrupted", lambda: p.send_signal(signal.SIGINT)), ("terminated", p.terminate)):
                    stop()
                    try:
                        p.wait(0.1)
                        print("Process is %s." % how)
                        return None
                    except subprocess.TimeoutExpired:
                        pass
                p.kill()
                print("Process is killed.")
            except OSError:
                pass
            return None
        finally:
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        if args.out:
            self.shell.user_ns[args.out] = out
        if args.err:
            self.shell.user_ns[args.err] = err
        if args.raise_error and p.returncode != 0:
            raise subprocess.CalledProcessError(p.returncode or -9, body)
        return None

    def _named_script(self, program, line, cell):
        return self.cell_script(program + (" " + line if line else ""), cell)

    def cell_sh(self, line, cell):
        return self._named_script("sh", line, cell)

    def cell_bash(self, line, cell):
        return self._named_script("bash", line, cell)

    def cell_perl(self, line, cell):
        return self._named_script("perl", line, cell)

    def cell_ruby(self, line, cell):
        return self._named_script("ruby", line, cell)

    def cell_python(self, line, cell):
        return self._named_script("python", line, cell)

    def cell_python2(self, line, cell):
        return self._named_script("python2", line, cell)

    def cell_python3(self, line, cell):
        return self._named_script("python3", line, cell)

    def cell_pypy(self, line, cell):
        return self._named_script("pypy", line, cell)

    # -- aliases (IPython's %alias: a shell command as a line magic) ---------------
    def _define_alias(self, name, cmd, check=True):
        nargs = cmd.count("%s") - cmd.count("%%s")
        if name in _ALIAS_BLACKLIST:
            raise ValueError("The name %s can't be aliased because it is a keyword or builtin." % name)
        if check and name not in self.aliases and self.find("line", name) is not None:
            raise ValueError("The name %s can't be aliased because it is another magic command." % name)
        if nargs > 0 and "%l" in cmd:
            raise ValueError("The %s and %l specifiers are mutually exclusive in alias definitions.")
        self.aliases[name] = cmd
        if name != "ls":   # cellbox's %ls stays (no colours)
            self.user["line"][name] = _Alias(self, name, cmd, nargs)

    def line_alias(self, line):
        """%alias NAME CMD: %NAME runs CMD in the shell (%s: the next word of
        the line, %l: the whole line); %alias lists them."""
        par = line.strip()
        if not par:
            print("Total number of aliases:", len(self.aliases))
            return sorted(self.aliases.items())
        name, cmd = par.split(None, 1)
        try:
            self._define_alias(name, cmd)
        except ValueError as e:
            print(e)
        return None

    def line_unalias(self, line):
        name = line.strip()
        if name not in self.aliases:
            print("%s is not an alias" % name)
            return
        del self.aliases[name]
        self.user["line"].pop(name, None)

    # -- files and folders --------------------------------------------------------
    def line_cd(self, line):
        """IPython's %cd: DIR, `-` (the previous one), `-N` (_dh[N]), `--PART`
        (the latest directory in _dh containing PART), a bookmark name (or
        -b NAME), nothing (home); -q: quiet. Every change is kept in _dh."""
        import pathlib
        try:
            oldcwd = pathlib.Path.cwd()
        except FileNotFoundError:
            oldcwd = None
        dh = self.shell.user_ns.setdefault("_dh", [])
        opts = {}
        numcd = re.match(r"(-)(\d+)$", line.strip())
        if numcd:
            try:
                ps = dh[int(numcd.group(2))]
            except IndexError:
                print("The requested directory does not exist in history.")
                return
        elif line.strip().startswith("--"):
            pat, ps, fallback = line.strip()[2:], None, None
            for ent in reversed(dh):
                ent = str(ent)
                if pat in os.path.basename(ent) and os.path.isdir(ent):
                    ps = ent
                    break
                if fallback is None and pat in ent and os.path.isdir(ent):
                    fallback = ent
            ps = ps or fallback
            if ps is None:
                print("No matching entry in directory history")
                return
        else:
            opts, ps = _parse_options(line, "qb")
        if ps == "-":
            if len(dh) < 2:
                raise UsageError("%cd -: No previous directory to change to.")
            ps = dh[-2]
        elif ps and (not os.path.isdir(ps) or "b" in opts):
            bkms = self._db_get("bookmarks", {})
            if ps in bkms:
                print("(bookmark:%s) -> %s" % (ps, bkms[ps]))
                ps = bkms[ps]
            elif "b" in opts:
                raise UsageError("Bookmark '%s' not found.  Use '%%bookmark -l' to see your bookmarks." % ps)
        try:
            os.chdir(os.path.expanduser(str(ps)) if ps else os.path.expanduser("~"))
        except OSError as e:
            print(e)
        else:
            cwd = pathlib.Path.cwd()
            if oldcwd != cwd:
                dh.append(cwd)
        if "q" not in opts and dh:
            print(dh[-1])

    def _db_get(self, key, default):
        try:
            from cellbox._ipython import get_shell
            return get_shell().db.get(key, default)
        except Exception:   # no pickleshare, or no writable home: no bookmarks
            return default

    def line_dhist(self, line):
        """%dhist [N | N1 N2]: the directory history (_dh)."""
        dh = self.shell.user_ns.setdefault("_dh", [])
        args = line.split()
        try:
            nums = [int(a) for a in args]
        except ValueError:
            raise UsageError("%dhist [N | N1 N2]") from None
        if len(nums) == 1:
            ini, fin = max(len(dh) - nums[0], 0), len(dh)
        elif len(nums) == 2:
            ini, fin = nums[0], min(nums[1], len(dh))
        elif not nums:
            ini, fin = 0, len(dh)
        else:
            raise UsageError("%dhist [N | N1 N2]")
        print("Directory history (kept in _dh)")
        for i in range(ini, fin):
            print("%d: %s" % (i, dh[i]))

    def _dir_stack(self):
        if not hasattr(self.shell, "dir_stack"):
            self.shell.dir_stack = []
        return self.shell.dir_stack

    def line_pushd(self, line):
        """%pushd [DIR]: cd to DIR, keeping the current directory on the stack."""
        home = os.path.expanduser("~")
        cwd = os.getcwd().replace(home, "~")
        if line.strip():
            self.line_cd(line)
        self._dir_stack().insert(0, cwd)
        return self._dir_stack()

    def line_popd(self, line):
        """%popd: back to the directory on top of the stack."""
        if not self._dir_stack():
            raise UsageError("%popd on empty stack")
        top = self._dir_stack().pop(0)
        self.line_cd(top)
        print("popd ->", top)

    def line_dirs(self, line):
        """%dirs: the directory stack."""
        return self._dir_stack()

    def line_bookmark(self, line):
        """%bookmark NAME [DIR] | -l | -d NAME | -r: directory bookmarks in
        IPython's profile database (shared with IPython)."""
        opts, args = _parse_options(line, "drl", mode="list")
        if len(args) > 2:
            raise UsageError("%bookmark: too many arguments")
        from cellbox._ipython import get_shell
        db = get_shell().db
        bkms = db.get("bookmarks", {})
        if "d" in opts:
            if not args:
                raise UsageError("%bookmark -d: must provide a bookmark to delete")
            if args[0] not in bkms:
                raise UsageError("%%bookmark -d: Can't delete bookmark '%s'" % args[0])
            del bkms[args[0]]
        elif "r" in opts:
            bkms = {}
        elif "l" in opts:
            names = sorted(bkms)
            size = max(map(len, names)) if names else 0
            print("Current bookmarks:")
            for name in names:
                print(("%-" + str(size) + "s -> %s") % (name, bkms[name]))
        else:
            if not args:
                raise UsageError("%bookmark: You must specify the bookmark name")
            bkms[args[0]] = os.getcwd() if len(args) == 1 else args[1]
        db["bookmarks"] = bkms

    def line_pwd(self, line):
        return os.getcwd()

    def line_ls(self, line):
        return self.system("ls -F --color=never " + line)

    def line_env(self, line):
        line = line.strip()
        if not line:
            return dict(os.environ)
        if "=" in line or " " in line:
            if "=" in line:
                k, _, v = line.partition("=")
            else:
                k, _, v = line.partition(" ")
            os.environ[k.strip()] = v.strip()
            print("env: %s=%s" % (k.strip(), v.strip()))
            return None
        try:
            return os.environ[line]
        except KeyError:
            raise UsageError("Environment does not have key: %s" % line)

    def line_set_env(self, line):
        """%set_env VAR VALUE or %set_env VAR=VALUE, as IPython."""
        split = "=" if "=" in line else " "
        bits = line.split(split, 1)
        if not line.strip() or len(bits) < 2:
            raise UsageError("usage is 'set_env var=val'")
        var, val = bits[0].strip(), bits[1].strip()
        if re.match(r".*\s.*", var):
            # (IPython's message shows the value)
            raise UsageError("refusing to set env var with whitespace: '%s'" % val)
        os.environ[var] = val
        print("env: %s=%s" % (var, val))

    def cell_writefile(self, line, cell):
        """%%writefile [-a] FILE (also %%file): the cell's text into FILE."""
        words = _arg_split(line)
        append = any(w in ("-a", "--append") for w in words)
        names = [w for w in words if w not in ("-a", "--append")]
        if not names:
            raise UsageError("the following arguments are required: filename")
        if len(names) > 1:
            raise UsageError("unrecognized arguments: %s" % " ".join(names[1:]))
        name = names[0]
        if re.match(r"^('.*')|(\".*\")$", name):
            name = name[1:-1]
        path = os.path.expanduser(name)
        if os.path.exists(path):
            print("%s %s" % ("Appending to" if append else "Overwriting", path))
        else:
            print("Writing %s" % path)
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.write(cell)

    cell_file = cell_writefile

    @staticmethod
    def _py_filename(name):
        """IPython's get_py_filename: NAME or NAME.py, else an IOError."""
        name = os.path.expanduser(name)
        if os.path.isfile(name):
            return name
        if not name.endswith(".py") and os.path.isfile(name + ".py"):
            return name + ".py"
        raise IOError("File `%r` not found." % name)

    def _show_script_error(self, e, filename, exception_only=False):
        """An error of a %run script as IPython's showtraceback shows it:
        from the script's frames on, or only its last line."""
        from cellbox import _ipython, _traceback
        if exception_only:   # IPython's showtraceback(exception_only=True)
            import _cellbox_c
            from cellbox.display import dumps
            tb = ["An exception has occurred, use %tb to see the full traceback.\n", _traceback._exception_only(e)]
            _cellbox_c.publish("error", dumps({"ename": type(e).__name__, "evalue": str(e), "traceback": tb}))
            return
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next
        sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
        _ipython.show_exception(e.with_traceback(tb) if tb is not None else e)

    def _execfile(self, fname, ns, exit_ignore=False, raise_exceptions=False):
        """IPython's safe_execfile: the file runs in ns with its folder first
        on sys.path; a SystemExit with a status shows as one line, another
        error as a traceback from the script on, never raised."""
        import warnings
        fname = os.path.realpath(os.path.expanduser(fname))
        try:
            with open(fname, "rb"):
                pass
        except Exception:
            warnings.warn("Could not open file <%s> for safe execution." % fname)
            return
        dname = os.path.dirname(fname)
        added = dname not in sys.path
        if added:
            sys.path.insert(0, dname)
        try:
            with open(fname, "rb") as f:
                exec(compile(f.read(), fname, "exec"), ns)
        except SystemExit as status:
            if status.code:
                if raise_exceptions:
                    raise
                if not exit_ignore:
                    self._show_script_error(status, fname, exception_only=True)
        except BaseException as e:
            if raise_exceptions or isinstance(e, KeyboardInterrupt):
                raise
            self._show_script_error(e, fname)
        finally:
            if added and dname in sys.path:
                sys.path.remove(dname)

    def _run_module(self, mod_name, where):
        """IPython's safe_run_module."""
        import runpy
        import warnings
        try:
            try:
                where.update(runpy.run_module(str(mod_name), run_name="__main__", alter_sys=True))
            except SystemExit as status:
                if status.code:
                    raise
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            from cellbox import _ipython
            _ipython.show_exception(e)
            warnings.warn("Unknown failure executing module: <%s>" % mod_name)

    def _execfile_ipy(self, fname):
        """IPython's safe_execfile_ipy: a .ipy file, or a notebook's code
        cells, run as cells (IPython syntax, silent) until one fails."""
        import warnings
        fname = os.path.realpath(os.path.expanduser(fname))
        if fname.endswith(".ipynb"):
            import nbformat
            nb = nbformat.read(fname, as_version=4)
            cells = [c.source for c in nb.cells if c.cell_type == "code"]
        else:
            with open(fname, encoding="utf-8") as f:
                cells = [f.read()]
        ip = self.shell.get_ipython()
        dname = os.path.dirname(fname)
        added = dname not in sys.path
        if added:
            sys.path.insert(0, dname)
        try:
            for cell in cells:
                if ip.run_cell(cell, silent=True).error_in_exec is not None:
                    break
        finally:
            if added and dname in sys.path:
                sys.path.remove(dname)
        del warnings

    @staticmethod
    def _run_timed(run, nruns):
        """IPython's _run_with_timing (CPU times from getrusage)."""
        import resource

        def clock2():
            u = resource.getrusage(resource.RUSAGE_SELF)
            return u.ru_utime, u.ru_stime

        twall0 = time.perf_counter()
        t0 = clock2()
        for _ in range(nruns):
            run()
        t1 = clock2()
        t_usr, t_sys = t1[0] - t0[0], t1[1] - t0[1]
        print("\nIPython CPU timings (estimated):")
        if nruns == 1:
            print("  User   : %10.2f s." % t_usr)
            print("  System : %10.2f s." % t_sys)
        else:
            print("Total runs performed:", nruns)
            print("  Times  : %10s   %10s" % ("Total", "Per run"))
            print("  User   : %10.2f s, %10.2f s." % (t_usr, t_usr / nruns))
            print("  System : %10.2f s, %10.2f s." % (t_sys, t_sys / nruns))
        print("Wall time: %10.2f s." % (time.perf_counter() - twall0))

    @_no_var_expand
    def line_run(self, line):
        """%run [-n -i -e -G] [(-t [-N N] | -d [-b BP] | -p [profile options])]
        (-m MODULE | FILE) [ARGS]: run a script as IPython does (a fresh
        __main__ whose globals then land in the notebook's namespace)."""
        import builtins
        import glob
        if "-m" in line and "--" not in line:   # IPython's issue #3664: options after -m MOD are the module's
            argv = shlex.split(line)
            for i, a in enumerate(argv):
                if a and a.startswith("-") and a != "-":
                    if a == "-m":
                        argv.insert(i + 2, "--")
                        break
                else:
                    break
            line = " ".join(shlex.quote(a) for a in argv)
        opts, arg_lst = _parse_options(line, "nidtN:b:pD:l:rs:T:em:G", list_all=True, mode="list")
        if "m" in opts:
            import importlib.util
            modulename = opts["m"][0]
            spec = importlib.util.find_spec(modulename)
            modpath = spec.origin   # (an AttributeError for no such module, as IPython's find_mod)
            if modpath is None:
                raise Exception("%r is not a valid modulename on sys.path" % modulename)
            arg_lst = [modpath] + arg_lst
        try:
            filename = self._py_filename(arg_lst[0])
        except IndexError as e:
            raise Exception("you must provide at least a filename.") from e
        except IOError as e:
            raise Exception(str(e)) from e
        ns = self.shell.user_ns
        if filename.lower().endswith((".ipy", ".ipynb")):
            had, old = "__file__" in ns, ns.get("__file__")
            ns["__file__"] = filename
            try:
                self._execfile_ipy(filename)
            finally:
                if had:
                    ns["__file__"] = old
                else:
                    ns.pop("__file__", None)
            return None
        exit_ignore = "e" in opts
        save_argv = sys.argv
        if "G" in opts:
            args = arg_lst[1:]
        else:   # IPython's shellglob: a pattern matching nothing stays, unescaped
            args = []
            for a in map(os.path.expanduser, arg_lst[1:]):
                args.extend(glob.glob(a) or [re.sub(r"\\([\\*?\[\]])", r"\1", a)])
        sys.argv = [filename] + args
        name = os.path.splitext(os.path.basename(filename))[0] if "n" in opts else "__main__"
        if "i" in opts:
            prog_ns = ns
            name_save = ns.get("__name__")
            prog_ns["__name__"] = name
            main_mod = sys.modules.get("__main__")
            prog_ns["__file__"] = filename
        else:
            import types
            cache = self.__dict__.setdefault("_main_mod_cache", {})
            key = os.path.abspath(filename)
            main_mod = cache.get(key)
            if main_mod is None:
                main_mod = cache[key] = types.ModuleType(name, doc="Module created for script run in IPython")
            else:
                main_mod.__dict__.clear()
                main_mod.__name__ = name
                main_mod.__doc__ = "Module created for script run in IPython"
            prog_ns = main_mod.__dict__
        main_mod_name = prog_ns["__name__"]
        restore_main = sys.modules.get("__main__") if main_mod_name == "__main__" else False
        sys.modules[main_mod_name] = main_mod
        stats = None
        try:
            if "p" in opts or "d" in opts:
                if "m" in opts:
                    code = "run_module(modulename, prog_ns)"
                    code_ns = {"run_module": self._run_module, "prog_ns": prog_ns, "modulename": modulename}
                else:
                    code = ("execfile(filename, prog_ns, raise_exceptions=True)" if "d" in opts
                            else "execfile(filename, prog_ns)")
                    code_ns = {"execfile": self._execfile, "prog_ns": prog_ns,
                               "filename": self._py_filename(filename)}
            if "p" in opts:
                stats = self._run_with_profiler(code, opts, code_ns)
            elif "d" in opts:
                bp = opts.get("b", ["1"])[0]
                bp_file, _, bp_line = bp.rpartition(":")
                self._debug_exec(code, "%s:%s" % (bp_file or filename, bp_line), ns=code_ns,
                                 mainfile=filename)
            else:
                if "m" in opts:
                    def run():
                        self._run_module(modulename, prog_ns)
                else:
                    def run():
                        self._execfile(filename, prog_ns, exit_ignore=exit_ignore)
                if "t" in opts:
                    try:
                        nruns = int(opts["N"][0])
                        if nruns < 1:
                            sys.stderr.write("ERROR:root:Number of runs must be >=1\n")
                            return None
                    except KeyError:
                        nruns = 1
                    self._run_timed(run, nruns)
                else:
                    run()
            if "i" in opts:
                ns["__name__"] = name_save
            else:
                prog_ns.pop("__name__", None)
                had, old = "__file__" in ns, ns.get("__file__")
                ns.update(prog_ns)
                if had:
                    ns["__file__"] = old
                else:
                    ns.pop("__file__", None)
        finally:
            ns["__builtins__"] = builtins
            sys.argv = save_argv
            if restore_main:
                sys.modules["__main__"] = restore_main
                if "__mp_main__" in sys.modules:
                    sys.modules["__mp_main__"] = restore_main
            else:
                sys.modules.pop(main_mod_name, None)
        return stats

    def line_load(self, line):
        """%load [-y] [-n] [-s SYMBOLS] [-r RANGES] SOURCE: code from history
        ranges, a file, a URL, a string or macro (or with -n an object's
        source) into the next cell, as IPython's."""
        import warnings
        from cellbox._kernel import StdinNotImplementedError
        opts, args = _parse_options(line, "yns:r:")
        contents = self._user_code(args, True, search_ns="n" in opts)
        if "s" in opts or "r" in opts:
            from IPython.core.magics.code import extract_code_ranges, extract_symbols, strip_initial_indent
        if "s" in opts:
            try:
                blocks, not_found = extract_symbols(contents, opts["s"])
            except SyntaxError:
                sys.stderr.write("ERROR:root:Unable to parse the input as valid Python code\n")
                return
            if len(not_found) == 1:
                warnings.warn("The symbol `%s` was not found" % not_found[0])
            elif len(not_found) > 1:
                names = ["`%s`" % x for x in not_found]
                warnings.warn("The symbols %s were not found" % (", ".join(names[:-1]) + " and " + names[-1]))
            contents = "\n".join(blocks)
        if "r" in opts:
            import itertools
            lines = contents.split("\n")
            slices = extract_code_ranges(opts["r"].replace(",", " "))
            contents = "\n".join(strip_initial_indent(itertools.chain.from_iterable(
                lines[slice(*slc)] for slc in slices)))
        n = len(contents)
        if n > 200000 and "y" not in opts:
            try:
                ans = _ask_yes_no("The text you're trying to load seems pretty big (%d characters). "
                                  "Continue (y/[N]) ?" % n, default="n")
            except StdinNotImplementedError:
                ans = True
            if ans is False:
                print("Operation cancelled.")
                return
        self.shell.get_ipython().set_next_input("# %%load %s\n" % line + contents, replace=True)

    def line_pip(self, line):
        self.system("%s -m pip %s" % (shlex.quote(sys.executable), line))
        print("Note: you may need to restart the kernel to use updated packages.")

    # -- timing -------------------------------------------------------------------
    @_needs_local_scope
    def line_time(self, line, local_ns=None):
        return self._time(line, None, local_ns)

    @_needs_local_scope
    def cell_time(self, line, cell, local_ns=None):
        return self._time(line, cell, local_ns)

    def _time(self, line, cell, local_ns=None):
        """IPython's %time: CPU times from getrusage, the wall time, the
        parser's and the compiler's when over 0.1 s; the value of a last
        expression is the result (of %%time too)."""
        import resource

        def clock2():
            u = resource.getrusage(resource.RUSAGE_SELF)
            return u.ru_utime, u.ru_stime

        def clock():
            return sum(clock2())

        if line and cell:
            raise UsageError("Can't use statement directly after '%%time'!")
        from cellbox._transform import transform_cell
        src = cell if cell else line
        src = transform_cell(src) if any(c in src for c in "%!?") else src
        ns = self.shell.user_ns
        # in a function: its locals too (IPython's needs_local_scope)
        loc = local_ns if local_ns is not None and local_ns is not ns else ns
        t0 = clock()
        tree = ast.parse(src, "<unknown>")
        tp = clock() - t0
        expr_val = None
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
            mode, source = "eval", "<timed eval>"
            tree = ast.Expression(tree.body[0].value)
        else:
            mode, source = "exec", "<timed exec>"
            if len(tree.body) > 1 and isinstance(tree.body[-1], ast.Expr):
                expr_val = ast.Expression(tree.body[-1].value)
                tree = ast.Module(tree.body[:-1], [])
        t0 = clock()
        code = compile(tree, source, mode)
        tc = clock() - t0
        from cellbox import _ipython
        wall_st = time.time()
        st = clock2()
        try:
            if mode == "eval":
                out = eval(code, ns, loc)
            else:
                exec(code, ns, loc)
                out = None
                if expr_val is not None:
                    out = eval(compile(expr_val, source, "eval"), ns, loc)
        except Exception as e:   # shown, not raised (IPython's showtraceback)
            tb = e.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename.startswith("<cellbox>"):
                tb = tb.tb_next
            sys.last_type, sys.last_value, sys.last_traceback = type(e), e, e.__traceback__
            _ipython.show_exception(e.with_traceback(tb) if tb is not None else e)
            return None
        end = clock2()
        wall = time.time() - wall_st
        user, system = end[0] - st[0], end[1] - st[1]
        print("CPU times: user %s, sys: %s, total: %s" % (_fmt_time(user), _fmt_time(system), _fmt_time(user + system)))
        print("Wall time: %s" % _fmt_time(wall))
        if tc > 0.1:
            print("Compiler : %s" % _fmt_time(tc))
        if tp > 0.1:
            print("Parser   : %s" % _fmt_time(tp))
        return out

    @_needs_local_scope
    def line_timeit(self, line, local_ns=None):
        return self._timeit(line, None, local_ns)

    @_needs_local_scope
    def cell_timeit(self, line, cell, local_ns=None):
        return self._timeit(line, cell, local_ns)

    def _timeit(self, line, cell, local_ns=None):
        """IPython's %timeit: -n loops, -r repeats (7), -t/-c wall or CPU
        clock, -p precision, -q quiet, -o the TimeitResult; as a cell magic the
        line is the setup and the cell the statement. The statement runs in a
        function (its names stay local), number found as IPython does (a
        power of 10 taking 0.2 s)."""
        import time
        import timeit
        opts, stmt = _parse_options(line, "n:r:tcp:qo", posix=False, preserve_non_opts=True)
        if stmt == "" and cell is None:
            return None
        timefunc = timeit.default_timer
        number = int(opts.get("n", 0))
        repeat = int(opts.get("r", max(7, timeit.default_repeat)))
        precision = int(opts.get("p", 3))
        if "t" in opts:
            timefunc = time.time
        if "c" in opts:
            timefunc = _cpu_clock
        from cellbox._transform import transform_cell
        setup, body = ("pass", stmt) if cell is None else (stmt, cell)
        setup, body = transform_cell(setup), transform_cell(body)
        # each checked alone first, so an error names its own code
        compile(setup, "<magic-timeit-setup>", "exec")
        compile(body, "<magic-timeit-stmt>", "exec")
        c0 = _cpu_clock()
        glob = self.shell.user_ns
        if cell is None and local_ns is not None and local_ns is not glob:
            glob = dict(glob, **local_ns)   # in a function: its locals too (IPython's needs_local_scope)
        timer = timeit.Timer(stmt=body, setup=setup, timer=timefunc, globals=glob)
        tc = _cpu_clock() - c0
        if number == 0:   # 0.2 s <= total < 2 s
            for index in range(10):
                number = 10 ** index
                if timer.timeit(number) >= 0.2:
                    break
        all_runs = timer.repeat(repeat, number)
        best, worst = min(all_runs) / number, max(all_runs) / number
        result = TimeitResult(number, repeat, best, worst, all_runs, tc, precision)
        if "q" not in opts:
            if worst > 4 * best and best > 0 and worst > 1e-6:
                print("The slowest run took %0.2f times longer than the fastest. This could mean that an "
                      "intermediate result is being cached." % (worst / best))
            print(result)
            if tc > 0.1:
                print("Compiler time: %.2f s" % tc)
        return result if "o" in opts else None

    # -- debugging (IPython's %debug, %pdb, %tb) ---------------------------------------
    # The debugger is IPython's (prompt "ipdb> ", what ipykernel uses) when
    # IPython is installed, else the standard library's pdb ("(Pdb) "); it
    # reads its commands with input(), so through the frontend's input
    # requests, and fails with StdinNotImplementedError when there are none.

    def _debugger(self):
        try:
            from IPython.core.debugger import InterruptiblePdb
        except Exception:
            import pdb
            return pdb.Pdb(nosigint=True)
        # nosigint: pdb's own SIGINT handler would outlive the session and
        # turn the next kernel interrupt into a debugger prompt
        d = InterruptiblePdb(nosigint=True)
        d.shell = _DebuggerShell(d.shell)
        return d

    def post_mortem(self, tb):
        """The debugger on a traceback's frames, from the user's code down
        (the kernel's own frames are left out)."""
        while tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith("<cellbox>"):
            tb = tb.tb_next
        d = self._debugger()
        d.reset()
        d.botframe = tb.tb_frame
        d.interaction(None, tb)

    def line_pdb(self, line):
        """%pdb [on|off|1|0]: the debugger after every error (no argument: toggle)."""
        par = line.strip().lower()
        if par:
            new = {"off": False, "0": False, "on": True, "1": True}.get(par)
            if new is None:
                print("Incorrect argument. Use on/1, off/0, or nothing for a toggle.")
                return
        else:
            new = not self.shell.call_pdb
        self.shell.call_pdb = new
        print("Automatic pdb calling has been turned", "ON" if new else "OFF")

    @_no_var_expand
    def line_debug(self, line, cell=None):
        """%debug: the debugger on the last error (post-mortem);
        %debug [-b FILE:LINE] STATEMENT and %%debug: run code under it."""
        parser = _arg_parser("%debug")
        parser.add_argument("--breakpoint", "-b", metavar="FILE:LINE")
        parser.add_argument("statement", nargs="*")
        try:
            args = parser.parse_args(_arg_split(line))
        except ValueError as e:   # an unbalanced quote
            raise UsageError(str(e)) from None
        if not (args.breakpoint or args.statement or cell):
            return self._debug_post_mortem()
        if not (args.breakpoint or cell):
            return self._debug_exec(line, None)
        code = " ".join(args.statement)
        if cell:
            code += "\n" + cell
        return self._debug_exec(code, args.breakpoint)

    cell_debug = line_debug

    def _debug_post_mortem(self):
        tb = getattr(sys, "last_traceback", None)
        if tb is None:
            sys.stderr.write("ERROR:root:No traceback has been produced, nothing to debug.\n")
            return
        self.post_mortem(tb)

    def _debug_exec(self, code, breakpoint, ns=None, mainfile=None):
        """IPython's _run_with_debugger: run code from its first line under the
        debugger, optionally with a breakpoint; an error of the code is
        printed, as IPython does, not raised."""
        import bdb
        import pdb
        deb = self._debugger()
        filename = bp_line = None
        if breakpoint:
            filename, _, bp = breakpoint.rpartition(":")
            try:
                bp_line = int(bp)
            except ValueError:
                raise UsageError("--breakpoint: FILE:LINE expected, got %r" % breakpoint) from None
        # bdb keeps its breakpoints in the class: start afresh
        bdb.Breakpoint.next = 1
        bdb.Breakpoint.bplist = {}
        bdb.Breakpoint.bpbynumber = [None]
        deb.clear_all_breaks()
        if bp_line is not None:
            if not deb.checkline(filename, bp_line):
                for bp in range(bp_line + 1, bp_line + 11):
                    if deb.checkline(filename, bp):
                        break
                else:
                    raise UsageError("\nI failed to find a valid line to set a breakpoint\n"
                                     "after trying up to line: %s.\n"
                                     "Please set a valid breakpoint manually with the -b option." % bp)
            deb.do_break("%s:%s" % (filename, bp_line))
            filename = mainfile or filename
            deb._wait_for_mainpyfile = True
            deb.mainpyfile = deb.canonic(filename)
            deb._exec_filename = filename
        print("NOTE: Enter 'c' at the %s prompt to continue execution." % deb.prompt)
        try:
            while True:
                trace = sys.gettrace()
                try:
                    deb.run(code, self.shell.user_ns if ns is None else ns)
                except pdb.Restart:
                    print("Restarting")
                    if filename:
                        deb._wait_for_mainpyfile = True
                        deb.mainpyfile = deb.canonic(filename)
                    continue
                finally:
                    sys.settrace(trace)
                break
        except BaseException as e:
            # printed from the statement's own frames on (not this magic's,
            # bdb's or the <string> of the statement), as IPython does
            from cellbox import _traceback
            tb = e.__traceback__
            while tb is not None and (tb.tb_frame.f_code.co_filename.startswith("<cellbox>")
                                      or tb.tb_frame.f_code.co_filename == bdb.__file__):
                tb = tb.tb_next
            if tb is not None and tb.tb_frame.f_code.co_filename == "<string>":
                tb = tb.tb_next
            print(_traceback.format_text(e.with_traceback(tb)))

    def line_tb(self, line):
        """%tb [MODE]: the last error's traceback again (in another %xmode)."""
        from cellbox import _traceback
        exc = getattr(sys, "last_value", None)
        saved = _traceback.mode
        try:
            if line.strip():
                try:
                    _traceback.set_mode(line.strip().capitalize())
                except ValueError as e:
                    import warnings
                    warnings.warn("Error changing user exception modes.\n%s" % e)
                    return
            if exc is None:
                sys.stderr.write("No traceback available to show.\n")
            elif type(exc).__name__ == "UsageError":
                sys.stderr.write("UsageError: %s\n" % exc)
            else:
                from cellbox._ipython import show_exception
                show_exception(exc)
        finally:
            _traceback.mode = saved

    # -- profiling -----------------------------------------------------------------------
    @_no_var_expand
    def line_prun(self, line, cell=None):
        """%prun [-s KEY] [-l LIMIT] [-r] [-q] [-T FILE] [-D FILE] STATEMENT
        (or %%prun): run under cProfile, the report in the pager."""
        opts, code = _parse_options(line, "D:l:rs:T:q", list_all=True, posix=False)
        if cell is not None:
            code += "\n" + cell
        from cellbox._transform import transform_cell
        return self._run_with_profiler(transform_cell(code), opts)

    cell_prun = line_prun

    def _run_with_profiler(self, code, opts, ns=None):
        import cProfile
        import io
        import pstats
        if ns is None:
            ns = self.shell.user_ns
        prof = cProfile.Profile()
        try:
            prof = prof.runctx(code, ns, ns)
            sys_exit = ""
        except SystemExit:
            sys_exit = "*** SystemExit exception caught in code being profiled."
        stats = pstats.Stats(prof).strip_dirs().sort_stats(*opts.get("s", ["time"]))
        limits = []
        for lim in opts.get("l", []):   # a count, a fraction or a name
            for conv in (int, float, str):
                try:
                    limits.append(conv(lim))
                    break
                except ValueError:
                    pass
        out = io.StringIO()
        stream, stats.stream = stats.stream, out
        try:
            stats.print_stats(*limits)
        finally:
            stats.stream = stream
        output = out.getvalue().rstrip()
        if "q" not in opts:
            self._page(output)
        print(sys_exit, end=" ")
        dump_file, text_file = opts.get("D", [""])[0], opts.get("T", [""])[0]
        if dump_file:
            prof.dump_stats(dump_file)
            print("\n*** Profile stats marshalled to file %r.%s" % (dump_file, sys_exit))
        if text_file:
            with open(text_file, "w", encoding="utf-8") as f:
                f.write(output)
            print("\n*** Profile printout saved to text file %r.%s" % (text_file, sys_exit))
        return stats if "r" in opts else None

    def _page(self, text):
        """ipykernel's pager: one "page" payload on the execute_reply."""
        payload = self.shell.payload
        payload[:] = [p for p in payload if p.get("source") != "page"]
        payload.append({"source": "page", "data": {"text/plain": text}, "start": 0})

    # -- input history (%rerun, %recall, %save) --------------------------------------------
    def _history(self, range_str, raw=True):
        """[(n, source)] of this session's cells in IPython's range syntax
        ("4", "2-5", "2:5", several separated by spaces; "" for all)."""
        inputs = self.shell._in
        out = []
        for session, start, stop in _hist_ranges(range_str):
            if session != 0:   # earlier sessions: cellbox keeps no history file
                continue
            n = len(inputs)
            if not stop or stop > n:
                stop = n
            for i in range(start, stop):
                out.append((i, self._source(inputs[i], raw)))
        return out

    @staticmethod
    def _source(code, raw):
        code = code.rstrip("\n")
        if not raw and any(ch in code for ch in "%!?"):
            from cellbox._transform import transform_cell
            code = transform_cell(code).rstrip("\n")
        return code

    def _history_tail(self, n):
        """The last n cells before this one."""
        entries = [(i, self._source(c, True)) for i, c in enumerate(self.shell._in) if i and c]
        return entries[:-1][-n:] if n > 0 else []

    def _history_search(self, pattern):
        import fnmatch
        return [(i, self._source(c, True)) for i, c in enumerate(self.shell._in)
                if i and c and fnmatch.fnmatchcase(c.rstrip("\n"), pattern)]

    def line_rerun(self, line):
        """%rerun [-l N | -g TEXT | RANGES]: run earlier cells again (default:
        the previous one)."""
        opts, args = _parse_options(line, "l:g:")
        if "l" in opts:
            try:
                n = int(opts["l"])
            except ValueError:
                print("Number of lines must be an integer")
                return
            if n == 0:
                print("Requested 0 last lines - nothing to run")
                return
            if n < 0:
                print("Number of lines to rerun cannot be negative")
                return
            hist = self._history_tail(n)
        elif "g" in opts:
            hist = [h for h in self._history_search("*" + opts["g"] + "*") if "rerun" not in h[1]][-1:]
        elif args:
            hist = self._history(args)
        else:
            hist = self._history_tail(1)
        hist = [src for _, src in hist]
        if not hist:
            print("No lines in history match specification")
            return
        print("=== Executing: ===")
        print("\n".join(hist))
        print("=== Output: ===")
        if self._rerunning:   # a %rerun among the cells run again: once is enough
            return
        self._rerunning = True
        try:
            self.shell.get_ipython().run_cell("\n".join(hist), store_history=False)
        finally:
            self._rerunning = False

    def line_recall(self, line):
        """%recall [RANGES | EXPR | TEXT] (also %rep): put earlier input, a
        value or the last result in the next cell (a set_next_input payload)."""
        ip = self.shell.get_ipython()
        if not line:
            ip.set_next_input(str(self.shell.user_ns.get("_", "")))
            return
        cmd = "\n".join(src for _, src in self._history(line))
        if cmd:
            ip.set_next_input(cmd.rstrip())
            return
        try:
            cmd = str(eval(line, self.shell.user_ns))
        except Exception:
            for _, src in reversed(self._history_search("*" + line + "*")):
                if "recall" in src or "rep" in src:
                    continue
                ip.set_next_input(src.rstrip())
                return
        else:
            ip.set_next_input(cmd.rstrip())
            return
        print("Couldn't evaluate or find in history:", line)

    line_rep = line_recall

    def line_save(self, line):
        """%save [-r] [-f] [-a] FILE [RANGES | FILE | NAME]: cells (by default
        all before this one) into a .py file."""
        from cellbox._kernel import StdinNotImplementedError
        opts, args = _parse_options(line, "fra", mode="list")
        if not args:
            raise UsageError("Missing filename.")
        raw, force, append = "r" in opts, "f" in opts, "a" in opts
        fname, codefrom = args[0], " ".join(args[1:])
        if not fname.endswith((".py", ".ipy")):
            fname += ".ipy" if raw else ".py"
        fname = os.path.expanduser(fname)
        exists = os.path.isfile(fname)
        if exists and not force and not append:
            try:
                overwrite = _ask_yes_no("File `%s` exists. Overwrite (y/[N])? " % fname, "n")
            except StdinNotImplementedError:
                print("File `%s` exists. Use `%%save -f %s` to force overwrite" % (fname, line))
                return
            if not overwrite:
                print("Operation cancelled.")
                return
        try:
            cmds = self._user_code(codefrom, raw)
        except (TypeError, ValueError) as e:
            print(e.args[0])
            return
        with open(fname, "a" if append else "w", encoding="utf-8") as f:
            if not exists or not append:
                f.write("# coding: utf-8\n")
            f.write(cmds)
            if not cmds.endswith("\n"):
                f.write("\n")
        print("The following commands were written to file `%s`:" % fname)
        print(cmds)

    def _user_code(self, target, raw, search_ns=False):
        """IPython's find_user_code: history ranges, else a file (or URL),
        else (search_ns) an object's source, else a string or a macro."""
        text = "\n".join(src for _, src in self._history(target, raw))
        if not target:   # everything but this cell
            text = text[:text.rfind("\n")] if "\n" in text else ""
        if text:
            return text
        if target.startswith(("http://", "https://")):
            import urllib.request
            with urllib.request.urlopen(target) as r:
                return r.read().decode("utf-8", "replace")
        candidates = [target]
        try:
            candidates.insert(0, self._py_filename(target))
        except IOError:
            pass
        for p in candidates:
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    lines = f.read().splitlines(True)
                # without its encoding cookie, as IPython's read_py_file
                cookie = re.compile(r"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+")
                return "".join(l for i, l in enumerate(lines) if not (i < 2 and cookie.match(l)))
            if os.path.isdir(os.path.expanduser(p)):
                raise ValueError("'%s' is a directory, not a regular file." % target)
        if search_ns:
            found, obj = self._find_object(target)
            if found:
                try:
                    src = self._inspector().info(obj, target, detail_level=1).get("source")
                except Exception:
                    src = None
                if src:
                    return src
        try:
            obj = eval(target, self.shell.user_ns)
        except Exception as e:
            raise ValueError("'%s' was not found in history, as a file, url, "
                             "nor in the user namespace." % target) from e
        if isinstance(obj, str):
            return obj
        if type(obj).__name__ == "Macro" and hasattr(obj, "value"):
            return obj.value
        raise TypeError("%s is neither a string nor a macro." % target, obj)

    # -- display cell magics ------------------------------------------------------
    def _display(self, mime, cell):
        from cellbox import display as d
        d.publish_display_data({mime: cell, "text/plain": "<IPython.core.display.%s object>" % {
            "text/html": "HTML", "text/markdown": "Markdown", "text/latex": "Latex",
            "image/svg+xml": "SVG", "application/javascript": "Javascript"}[mime]})

    def cell_html(self, line, cell):
        self._display("text/html", cell)

    def cell_markdown(self, line, cell):
        self._display("text/markdown", cell)

    def cell_latex(self, line, cell):
        self._display("text/latex", cell)

    def cell_svg(self, line, cell):
        """IPython's %%svg: the cell through IPython.display.SVG, which
        parses it (minidom) and keeps its <svg> element only."""
        from xml.dom import minidom
        found = minidom.parseString(cell).getElementsByTagName("svg")
        self._display("image/svg+xml", found[0].toxml() if found else cell)

    def cell_javascript(self, line, cell):
        self._display("application/javascript", cell)

    cell_js = cell_javascript

    def cell_capture(self, line, cell):
        """%%capture [--no-stdout] [--no-stderr] [--no-display] [name]: run the
        cell, keeping its stdout, stderr and rich outputs in a CapturedIO
        (stored as `name`) instead of showing them."""
        import io
        import json
        from cellbox import display as d
        args = line.split()
        bad = [a for a in args if a.startswith("-") and a not in ("--no-stdout", "--no-stderr", "--no-display")]
        names = [a for a in args if not a.startswith("-")]
        if bad or len(names) > 1:
            raise UsageError("%%capture [--no-stdout] [--no-stderr] [--no-display] [output]")
        out, err, outputs = io.StringIO(), io.StringIO(), []
        saved = sys.stdout, sys.stderr, d._publish

        def capture(msg_type, content, buffers=None):
            if msg_type in ("display_data", "execute_result"):
                c = json.loads(content)
                outputs.append(RichOutput(c.get("data", {}), c.get("metadata", {})))
            elif msg_type == "clear_output":
                del outputs[:]
            elif msg_type != "update_display_data":
                saved[2](msg_type, content, buffers)

        if "--no-stdout" not in args:
            sys.stdout = out
        if "--no-stderr" not in args:
            sys.stderr = err
        if "--no-display" not in args:
            d._publish = capture
        error = None
        try:
            self.shell.run_cell_body(cell)
        except Exception as e:
            # as IPython, whose %%capture runs the cell with run_cell: the
            # error is shown (the cell's frames only) and what was captured
            # until then is kept (it was lost with the name unset)
            error = e
        finally:
            sys.stdout, sys.stderr, d._publish = saved
            if names:
                self.shell.user_ns[names[0]] = CapturedIO(out.getvalue(), err.getvalue(), outputs)
        if error is not None:
            from cellbox import _ipython
            _ipython.show_exception(error)

    # -- matplotlib and configuration -----------------------------------------------
    # IPython's pylabtools.backends, in its order (`%matplotlib --list` prints the keys)
    _MPL_BACKENDS = {"tk": "TkAgg", "gtk": "GTKAgg", "gtk3": "GTK3Agg", "gtk4": "GTK4Agg", "wx": "WXAgg",
                     "qt4": "Qt4Agg", "qt5": "Qt5Agg", "qt6": "QtAgg", "qt": "Qt5Agg", "osx": "MacOSX",
                     "nbagg": "nbAgg", "notebook": "nbAgg", "agg": "agg", "svg": "svg", "pdf": "pdf", "ps": "ps",
                     "inline": "module://matplotlib_inline.backend_inline",
                     "ipympl": "module://ipympl.backend_nbagg", "widget": "module://ipympl.backend_nbagg"}
    _MPL_GUIS = {"tk", "gtk", "gtk3", "gtk4", "wx", "qt4", "qt5", "qt6", "qt", "osx"}

    def line_matplotlib(self, line):
        """IPython's %matplotlib [-l] [GUI]: inline (the default), notebook/nbagg
        (matplotlib's interactive figures over comms), widget/ipympl when
        ipympl is installed, the non-interactive agg/svg/pdf/ps. A desktop
        GUI needs an event loop in the kernel, which cellbox does not run."""
        args = line.split()
        if args and args[0] in ("-l", "--list"):
            print("Available matplotlib backends: %s" % list(self._MPL_BACKENDS))
            return
        if len(args) > 1 or (args and args[0].startswith("-")):
            raise UsageError("%%matplotlib [-l] [GUI] (got %r)" % line.strip())
        gui = args[0].lower() if args else "inline"
        if gui == "auto":
            gui = "inline"
        if gui not in self._MPL_BACKENDS:
            raise UsageError("Key backend: '%s' not found in known backends: %s"
                             % (gui, ", ".join(self._MPL_BACKENDS)))
        from cellbox import _inline
        if gui == "inline":
            _inline.enable(self.shell)
            if not args:
                print("Using matplotlib backend: %s" % _inline.BACKEND)
            return
        # IPython's enable_matplotlib: the first GUI chosen sticks (agg counts as none)
        sel = None if gui == "agg" else gui
        first = getattr(self.shell, "_pylab_gui_select", None)
        if first is None:
            self.shell._pylab_gui_select = sel
        elif sel != first:
            print("Warning: Cannot change to a different GUI toolkit: %s. Using %s instead." % (sel, first))
            gui = first
        import matplotlib
        import matplotlib.pyplot as plt
        backend = self._MPL_BACKENDS[gui]
        plt.switch_backend(backend)   # matplotlib's own error for a GUI without a display, or no ipympl
        if gui in self._MPL_GUIS:
            _inline.enable(self.shell)
            raise UsageError("%%matplotlib %s needs a GUI event loop in the kernel, which cellbox does not "
                             "run; figures stay inline (%%matplotlib notebook or widget are interactive)" % gui)
        matplotlib.interactive(gui not in ("agg", "svg", "pdf", "ps"))

    # the configurables ipykernel lists (IPython's own classes describe them)
    _CONFIGURABLES = {
        "AliasManager": ("IPython.core.alias", "AliasManager"),
        "DisplayFormatter": ("IPython.core.formatters", "DisplayFormatter"),
        "HistoryManager": ("IPython.core.history", "HistoryManager"),
        "IPCompleter": ("IPython.core.completer", "IPCompleter"),
        "IPKernelApp": ("ipykernel.kernelapp", "IPKernelApp"),
        "InlineBackend": ("matplotlib_inline.config", "InlineBackend"),
        "LoggingMagics": ("IPython.core.magics.logging", "LoggingMagics"),
        "MagicsManager": ("IPython.core.magic", "MagicsManager"),
        "OSMagics": ("IPython.core.magics.osm", "OSMagics"),
        "PrefilterManager": ("IPython.core.prefilter", "PrefilterManager"),
        "ScriptMagics": ("IPython.core.magics.script", "ScriptMagics"),
        "StoreMagics": ("IPython.extensions.storemagic", "StoreMagics"),
        "ZMQInteractiveShell": ("ipykernel.zmqshell", "ZMQInteractiveShell"),
    }

    def _config_names(self):
        names = [n for n in self._CONFIGURABLES if n != "InlineBackend"]
        if "cellbox._inline" in sys.modules and sys.modules["cellbox._inline"]._shell is not None:
            names.append("InlineBackend")   # as ipykernel: once the inline backend is on
        return sorted(names)

    def _config_current(self, classname, trait):
        """The value cellbox uses for Class.trait (the trait's default when
        cellbox has no such setting)."""
        if classname == "InlineBackend":
            from cellbox import _inline
            if trait in _inline.config:
                return _inline.config[trait]
        elif classname in ("IPCompleter",) and trait == "use_jedi":
            return bool(getattr(self.shell.completer, "use_jedi", True))
        elif classname == "ZMQInteractiveShell":
            sh = self.shell
            known = {"ast_node_interactivity": lambda: sh.ast_node_interactivity,
                     "colors": lambda: __import__("cellbox._traceback")._traceback.scheme,
                     "xmode": lambda: __import__("cellbox._traceback")._traceback.mode,
                     "pdb": lambda: bool(sh.call_pdb)}
            if trait in known:
                try:
                    return known[trait]()
                except Exception:
                    pass
        cls = self._config_class(classname)
        t = cls.class_traits(config=True).get(trait) if cls is not None else None
        if t is None:
            raise AttributeError("'%s' object has no attribute '%s'" % (classname, trait))
        return t.default()

    def _config_class(self, classname):
        import importlib
        mod, name = self._CONFIGURABLES[classname]
        try:
            return getattr(importlib.import_module(mod), name)
        except Exception:
            if classname == "ZMQInteractiveShell":
                from IPython.core.interactiveshell import InteractiveShell
                return InteractiveShell
            return None

    def line_config(self, line):
        """%config [Class[.trait [= value]]]: IPython's configurables, listed
        and described as ipykernel does; cellbox applies the settings it has."""
        names = self._config_names()
        line = line.strip()
        if not line:
            print("Available objects for config:")
            for name in names:
                print("   ", name)
            return None
        if line in names:
            cls = self._config_class(line)
            if cls is None:
                raise UsageError("%%config %s needs IPython's classes (python3-ipython)" % line)
            # an instance made without __init__ (no side effects), holding
            # cellbox's values: class_get_help shows them as "Current:"
            inst = cls.__new__(cls)
            for trait in cls.class_traits(config=True):
                try:
                    inst._trait_values[trait] = self._config_current(line, trait)
                except Exception:
                    pass
            print(re.sub(r"^--", "", cls.class_get_help(inst), flags=re.M))
            return None
        if re.match(r"^\w+\.\w+$", line):
            cls, attr = line.split(".")
            names.index(cls)   # a ValueError for a class not listed, as IPython
            return self._config_current(cls, attr)
        if "=" not in line:
            msg = "Invalid config statement: %r, should be `Class.trait = value`." % line
            for name in names:
                if line.lower() == name.lower():
                    msg += "\nDid you mean %s (note the case)?" % name
                    break
            raise UsageError(msg)
        m = re.match(r"^(\w+)\.(\w+)\s*=\s*(.+)$", line)
        if not m:
            raise UsageError("%%config Class.trait = value (got %r)" % line)
        cls, trait, value = m.groups()
        value = eval(value, self.shell.user_ns)
        if cls == "InlineBackend":
            from cellbox import _inline
            _inline.configure(trait, value)
        elif cls in ("Completer", "IPCompleter") and trait == "use_jedi":
            self.shell.completer.use_jedi = bool(value)
        elif cls in ("InteractiveShell", "ZMQInteractiveShell") and trait == "ast_node_interactivity":
            if value not in self.shell.INTERACTIVITY:
                raise UsageError("%%config: ast_node_interactivity must be one of %s, not %r"
                                 % (", ".join(self.shell.INTERACTIVITY), value))
            self.shell.ast_node_interactivity = value
        else:
            sys.stderr.write("%%config: %s.%s is ignored by cellbox\n" % (cls, trait))
        return None

    def line_xmode(self, line):
        """%xmode [Plain|Context|Verbose|Minimal]: how errors are shown; no
        name switches to the next mode."""
        from cellbox import _traceback
        if line.strip() in ("--show", "--hide"):   # IPython: hidden frames; cellbox hides none
            return
        try:
            _traceback.set_mode(line.strip().capitalize())
        except ValueError as e:
            import warnings
            warnings.warn("Error changing user exception modes.\n%s" % e)
            return
        print("Exception reporting mode:", _traceback.mode)

    # -- extensions (IPython's messages) --------------------------------------------
    def line_load_ext(self, line):
        name = line.strip()
        if not name:
            raise UsageError("Missing module name.")
        res = self.shell.get_ipython().extension_manager.load_extension(name)
        if res == "already loaded":
            print("The %s extension is already loaded. To reload it, use:" % name)
            print("  %reload_ext", name)
        elif res == "no load function":
            print("The %s module is not an IPython extension." % name)

    def line_unload_ext(self, line):
        name = line.strip()
        if not name:
            raise UsageError("Missing module name.")
        res = self.shell.get_ipython().extension_manager.unload_extension(name)
        if res == "no unload function":
            print("The %s extension doesn't define how to unload it." % name)
        elif res == "not loaded":
            print("The %s extension is not loaded." % name)

    def line_reload_ext(self, line):
        name = line.strip()
        if not name:
            raise UsageError("Missing module name.")
        self.shell.get_ipython().extension_manager.reload_extension(name)

    def line_autoreload(self, line):
        from cellbox._autoreload import install
        install(self.shell).set_mode(line.strip() or "1")

    def line_aimport(self, line):
        from cellbox._autoreload import install
        install(self.shell)

    # -- introspection ----------------------------------------------------------------
    def _pinfo_text(self, name, detail):
        """IPython's page for name? (name?? with detail 1), with ipykernel's
        colours (the Inspector of the current %colors scheme); cellbox's own
        layout without IPython. None when the name is not found."""
        from cellbox._inspect import _MISSING, _resolve, page_text
        obj = _resolve(self.shell, name)
        if obj is _MISSING:
            return None
        try:
            from IPython.utils.ipstruct import Struct
            insp = self._inspector()
        except (ImportError, UsageError):
            return page_text(self.shell, name, detail)
        import builtins
        root = name.split(".")[0]
        space = ("Interactive" if root in self.shell.user_ns else
                 "Python builtin" if root in builtins.__dict__ else "")
        parent = None
        if "." in name:
            parent = _resolve(self.shell, name.rsplit(".", 1)[0])
        info = Struct(found=True, obj=obj, namespace=space, ismagic=False, isalias=False, parent=parent)
        text = insp._get_info(obj, name, None, info, detail_level=detail)["text/plain"]
        # IPython makes the cell's file name absolute (cwd + "<ipython-input-...>")
        return re.sub(r"[^\s\x1b]*/(<ipython-input-\d+-[0-9a-f]+>)", r"\1", text)

    def line_pinfo(self, line, detail=0):
        text = None if line.strip().startswith("%") else self._pinfo_text(line.strip(), detail)
        if text is None and self.magic_help(line, detail):
            return
        if text is None:
            print("Object `%s` not found." % line.strip())
            return
        self.shell.payload.append({"source": "page", "data": {"text/plain": text}, "start": 0})

    def line_pinfo2(self, line):
        return self.line_pinfo(line, 1)

    # -- IPython's other inspection magics (%pdef %pdoc %psource %pfile %page) -----------
    def _find_object(self, name):
        """(found, obj) for a dotted name in the user's namespace or the
        builtins, without evaluating anything else (IPython's _ofind)."""
        import builtins
        parts = name.split(".")
        if not name or not all(p.isidentifier() for p in parts):
            return False, None
        for ns in (self.shell.user_ns, builtins.__dict__):
            if parts[0] in ns:
                obj = ns[parts[0]]
                try:
                    for attr in parts[1:]:
                        obj = getattr(obj, attr)
                except Exception:
                    return False, None
                return True, obj
        return False, None

    def _inspector(self):
        """IPython's Inspector with ipykernel's colour scheme (IPython is
        needed for these magics, as they show IPython's own layout)."""
        try:
            from IPython.core.oinspect import Inspector, InspectColors
            from IPython.utils import PyColorize
        except ImportError:
            raise UsageError("this magic needs IPython (apt-get install python3-ipython)") from None
        from cellbox import _traceback
        return Inspector(InspectColors, PyColorize.ANSICodeColors, _traceback.scheme)

    def _inspect(self, meth, line):
        name = line.strip()
        found, obj = self._find_object(name)
        if not found:
            print("Object `%s` not found." % name)
            return
        insp = self._inspector()
        if meth == "pdoc":
            insp.pdoc(obj, name)
        else:
            getattr(insp, meth)(obj, name)

    def line_pdef(self, line):
        """%pdef OBJ: the call signature of a callable."""
        self._inspect("pdef", line)

    def line_pdoc(self, line):
        """%pdoc OBJ: the docstring (in the pager)."""
        self._inspect("pdoc", line)

    def line_psource(self, line):
        """%psource OBJ: the source code (in the pager, coloured)."""
        self._inspect("psource", line)

    def line_pfile(self, line):
        """%pfile OBJ: the whole file the object was defined in (in the pager)."""
        self._inspect("pfile", line)

    def line_page(self, line):
        """%page [-r] OBJ: the object pretty-printed (-r: str()) in the pager."""
        opts, name = _parse_options(line, "r")
        found, obj = self._find_object(name or "_")
        if not found:
            print("Object `%s` not found" % (name or "_"))
            return
        if "r" in opts:
            text = str(obj)
        else:
            from pprint import pformat
            text = pformat(obj)
        self._page(text)

    def _pycolorize(self, src):
        try:
            from IPython.utils import PyColorize
        except ImportError:
            return src
        return PyColorize.Parser(style="Neutral").format(src, "str")

    def line_pycat(self, line):
        """%pycat FILE: a Python file, coloured, in the pager."""
        path = line.strip()
        try:
            with open(os.path.expanduser(path), "rb") as fh:
                raw = fh.read()
        except (OSError, ValueError):
            print("Error: no such file, variable, URL, history range or macro")
            return
        import io
        import tokenize
        try:
            text = tokenize.TextIOWrapper(io.BytesIO(raw), tokenize.detect_encoding(io.BytesIO(raw).readline)[0],
                                          line_buffering=True).read()
        except (SyntaxError, LookupError):
            text = raw.decode("utf-8", "replace")
        self._page(self._pycolorize(text))

    def line_less(self, line):
        """%less FILE (ipykernel's): the file in the pager, coloured when .py."""
        path = line.strip()
        if not path:
            raise UsageError("Missing filename.")
        with open(path) as fh:
            text = fh.read()
        self._page(self._pycolorize(text) if path.endswith(".py") else text)

    line_more = line_less

    def line_xdel(self, line):
        """%xdel [-n] NAME: delete a variable and the references the output
        history holds to it (-n: by name only)."""
        opts, name = _parse_options(line, "n")
        ns = self.shell.user_ns
        try:
            if name in ("__builtin__", "__builtins__"):
                raise ValueError("Refusing to delete %s" % name)
            if name not in ns:
                raise NameError("name '%s' is not defined" % name)
            obj = ns[name]
            del ns[name]
            if "n" not in opts:
                out = self.shell._out
                for k in [k for k, v in out.items() if v is obj]:
                    del out[k]
                unders = self.shell._unders
                for i, k in enumerate(("_", "__", "___")):
                    if ns.get(k) is obj:
                        ns[k] = ""
                    if unders[i] is obj:
                        unders[i] = ""
        except (NameError, ValueError) as e:
            print(type(e).__name__ + ": " + str(e))

    def line_reset_selective(self, line):
        """%reset_selective [-f] REGEX: delete the variables whose names match."""
        opts, regex = _parse_options(line, "f")
        if "f" not in opts:
            from cellbox._kernel import _read_line
            ans = _read_line("Once deleted, variables cannot be recovered. Proceed (y/[n])? ", False)
            if ans.strip().lower() not in ("y", "yes"):
                print("Nothing done.")
                return
        if not regex:
            print("No regex pattern specified. Nothing done.")
            return
        m = re.compile(regex)
        for n in self.line_who_ls(""):
            if m.search(n):
                del self.shell.user_ns[n]

    def line_conda(self, line):
        """%conda: only in a conda environment (never a Debian Python)."""
        if not os.path.isdir(os.path.join(sys.prefix, "conda-meta")):
            raise ValueError("The python kernel does not appear to be a conda environment.  "
                             "Please use ``%pip install`` instead.")
        self.system("conda " + line)

    def line_automagic(self, line):
        """%automagic [on|off]: whether `pwd` works without the %."""
        arg = line.strip().lower()
        if arg in ("on", "1", "true"):
            val = True
        elif arg in ("off", "0", "false"):
            val = False
        else:
            val = not self.shell.automagic
        self.shell.automagic = val
        print("\nAutomagic is %s, %% prefix %s needed for line magics." % (("ON", "IS NOT") if val else ("OFF", "IS")))

    def line_store(self, line):
        """%store (IPython's storemagic): variables kept across sessions in
        IPython's profile database (~/.ipython/profile_default/db), shared
        with IPython and ipykernel."""
        store = getattr(self, "_storemagic", None)
        if store is None:
            try:
                from IPython.extensions.storemagic import StoreMagics
            except ImportError:
                raise UsageError("%store needs IPython (apt-get install python3-ipython)") from None
            from cellbox._ipython import get_shell
            store = self._storemagic = StoreMagics(shell=get_shell())
        return store.store(line)

    def line_psearch(self, line):
        """%psearch [-a] [-i|-c] [-s NS] [-e NS] [-l] PATTERN [TYPE]: the names
        matching PATTERN (* and ? wildcards; a.b* looks into a) in the user's
        namespace and the builtins, as IPython's (oinspect.psearch)."""
        import builtins
        import types
        opts, args = _parse_options(line, "cias:e:l", list_all=True)
        typestr2type = {t[:-4].lower(): getattr(types, t) for t in dir(types) if t.endswith("Type")}
        if "l" in opts:
            return self._page("\n".join(sorted(typestr2type)))
        ignore_case = "i" in opts   # IPython's wildcards_case_sensitive is True
        ns_table = {"user_local": self.shell.user_ns, "user_global": self.shell.user_ns,
                    "builtin": builtins.__dict__}
        search = ["user_local", "user_global", "builtin"] + opts.get("s", [])
        search = [n for n in search if n not in opts.get("e", [])]
        cmds = args.split()
        if len(cmds) not in (1, 2):
            raise ValueError("invalid argument string for psearch: <%s>" % args)
        pattern, type_pattern = cmds[0], (cmds[1] if len(cmds) == 2 else "all")
        for n in search:
            if n not in ns_table:
                raise ValueError("invalid namespace <%s>. Valid names: %s" % (n, ns_table.keys()))

        def matching(ns, parts, type_pattern):
            reg = re.compile(parts[0].replace("*", ".*").replace("?", ".") + "$", re.I if ignore_case else 0)
            found = {}
            for key, obj in ns.items():
                if not reg.match(key) or not ("a" in opts or key.startswith("__") or not key.startswith("_")):
                    continue
                if len(parts) == 1:
                    t = typestr2type.get(type_pattern, False) if type_pattern != "all" else None
                    if t is None or (t and isinstance(obj, t)):
                        found[key] = obj
                    continue
                try:
                    words = set(dir(obj)) | set(dir(type(obj)))
                except Exception:
                    words = set(dir(type(obj)))
                inner = {}
                for w in words:
                    try:
                        inner[w] = getattr(obj, w)
                    except AttributeError:
                        pass
                for k, v in matching(inner, parts[1:], type_pattern).items():
                    found["%s.%s" % (key, k)] = v
            return found

        result, seen = set(), set()
        for n in search:
            if id(ns_table[n]) not in seen:
                seen.add(id(ns_table[n]))
                result.update(matching(ns_table[n], pattern.split("."), type_pattern))
        self._page("\n".join(sorted(result)))

    def line_who_ls(self, line):
        """%who_ls [TYPE...]: the names of the user's variables (of those types)."""
        names = self._user_names()
        types = set(line.split())
        if types:
            ns = self.shell.user_ns
            names = [n for n in names if type(ns[n]).__name__ in types]
        return names

    def line_who(self, line):
        """%who [TYPE...]: the user's variables (of those types, e.g. %who int str)."""
        names = self.line_who_ls(line)
        if not names:
            print("No variables match your requested type." if line.strip() else "Interactive namespace is empty.")
            return
        text = ""
        for i, name in enumerate(names, 1):
            text += name + "\t "
            if i % 9 == 0:
                text += "\n"
        print(text)

    def line_whos(self, line):
        """%whos [TYPE...]: the user's variables with their type and value
        (a length for dict/list/tuple, the shape of a numpy array)."""
        names = self.line_who_ls(line)
        if not names:
            print("No variables match your requested type." if line.strip() else "Interactive namespace is empty.")
            return
        ndarray = None
        if "numpy" in sys.modules:
            ndarray = getattr(sys.modules["numpy"], "ndarray", None)
        ns = self.shell.user_ns
        values = [ns[n] for n in names]
        types = [type(v).__name__ for v in values]
        varwidth = max(max(map(len, names)), len("Variable")) + 3
        typewidth = max(max(map(len, types)), len("Type")) + 3
        print("Variable".ljust(varwidth) + "Type".ljust(typewidth) + " Data/Info\n"
              + "-" * (varwidth + typewidth + len("Data/Info") + 1))
        for name, value, tname in zip(names, values, types):
            head = "%-*s%-*s" % (varwidth, name, typewidth, tname)
            if tname in ("dict", "list", "tuple"):
                print(head, "n=" + str(len(value)))
            elif ndarray is not None and isinstance(value, ndarray) and tname == ndarray.__name__:
                shape = str(value.shape).replace(",", "").replace(" ", "x")[1:-1]
                nbytes = value.size * value.itemsize
                info = "%s: %s elems, type `%s`, %s bytes" % (shape, value.size, value.dtype, nbytes)
                if nbytes >= 100000:
                    info += " (%s kb)" % (nbytes / 1024) if nbytes < 1048576 else " (%s Mb)" % (nbytes / 1048576)
                print(head, info)
            else:
                try:
                    text = str(value)
                except Exception:
                    text = "<object with id %d (str() failed)>" % id(value)
                text = text.replace("\n", "\\n")
                print(head, text if len(text) < 50 else text[:25] + "<...>" + text[-25:])

    def _user_names(self):
        hidden, ns = self.shell._hidden, self.shell.user_ns
        # as IPython: a name of the kernel's own (get_ipython, exit, In...) is
        # the user's once bound to something else (from IPython import get_ipython)
        return sorted(n for n in ns if not n.startswith("_") and (n not in hidden or ns[n] is not hidden[n]))

    def line_reset(self, line):
        ns = self.shell.user_ns
        for n in [n for n in ns if n not in self.shell._hidden and not n.startswith("__")]:
            del ns[n]
        self.shell._out.clear()
        # as IPython's: the last results are forgotten too, and _, __, ___
        # are gone until the next result
        self.shell._unders[:] = ["", "", ""]
        for k in ("_", "__", "___"):
            ns.pop(k, None)

    # -- %lsmagic and help on magics (IPython's _ofind + Inspector.pinfo) -----------
    def _hidden(self, kind, name):
        """cellbox's %autoreload and %aimport are listed, as in IPython, once
        the autoreload extension is loaded."""
        if kind == "line" and name in ("autoreload", "aimport"):
            from cellbox import _autoreload
            return _autoreload._instance is None
        return False

    def class_of(self, kind, name, fn):
        """The name of IPython's Magics class a magic belongs to (%lsmagic's
        JSON), 'Other' for functions and aliases."""
        own = getattr(fn, "__self__", None) is self
        if name in self.user[kind] and not own:
            owner = getattr(fn, "__self__", None)
            return "Other" if owner is None else type(owner).__name__
        cls = _MAGIC_CLASSES[kind].get(name)
        if cls is None:
            cls = "AutoreloadMagics" if name in ("autoreload", "aimport") else "Other"
        return cls

    def line_lsmagic(self, line):
        """List currently available magic functions."""
        return _LSMagic(self)

    def _magic_object(self, kind, name, fn):
        """What IPython's inspector shows for a magic: IPython's own function
        (its docstring, file and source) for the magics cellbox implements,
        an alias object for aliases, the user's function otherwise."""
        if name in self.user[kind] and getattr(fn, "__self__", None) is not self:
            target = getattr(fn, "_cellbox_alias", None)
            if target is not None:
                from IPython.core.magic import MagicAlias
                return MagicAlias(None, target[0], target[1], target[2])
            return fn
        if kind == "line" and name == "ls":
            return _Alias(self, "ls", self.aliases["ls"], 0)
        alias = _MAGIC_ALIASES.get((kind, name))
        if alias is not None:
            from IPython.core.magic import MagicAlias
            return MagicAlias(None, alias, kind)
        if kind == "cell" and name in _SCRIPT_MAGICS:
            import types
            from IPython.core.magics.script import ScriptMagics
            return ScriptMagics._make_script_magic(types.SimpleNamespace(script_paths={}), name)
        cls_name = self.class_of(kind, name, fn)
        modname = _MAGIC_MODULES.get(cls_name)
        if modname is None:
            return fn
        import importlib
        try:
            cls = getattr(importlib.import_module(modname), cls_name)
            return getattr(cls, cls.magics[kind][name])
        except Exception:
            return fn

    def magic_help(self, oname, detail=0):
        """%name? / %%name?? / name?: the magic's docstring (or source) in the
        pager, as IPython's pinfo; False when there is no such magic."""
        name = oname.strip()
        if name.startswith("%%"):
            order = ("cell",)
        elif name.startswith("%"):
            order = ("line",)
        else:
            order = ("line", "cell")
        name = name.lstrip("%")
        for kind in order:
            fn = self.find(kind, name)
            if fn is not None and not self._hidden(kind, name):
                break
        else:
            return False
        obj = self._magic_object(kind, name, fn)
        from IPython.utils.ipstruct import Struct
        info = Struct(ismagic=True, isalias=isinstance(obj, _Alias), namespace="IPython internal",
                      found=True, obj=obj, parent=None)
        self._inspector().pinfo(obj, oname.strip(), None, info, detail_level=detail, enable_html_pager=False)
        return True

    def line_hist(self, line):
        return self.line_history(line)

    def cell_HTML(self, line, cell):
        return self.cell_html(line, cell)

    def cell_SVG(self, line, cell):
        return self.cell_svg(line, cell)

    # -- IPython's BasicMagics ------------------------------------------------------
    def line_alias_magic(self, line):
        """%alias_magic [-l] [-c] [-p PARAMS] name target: another name for a magic."""
        p = _arg_parser("%alias_magic")
        p.add_argument("-l", "--line", action="store_true")
        p.add_argument("-c", "--cell", action="store_true")
        p.add_argument("-p", "--params", default=None)
        p.add_argument("name")
        p.add_argument("target")
        args = p.parse_args(_arg_split(line, posix=True))
        name, target = args.name.lstrip("%"), args.target.lstrip("%")
        params = args.params
        if params and ((params.startswith('"') and params.endswith('"'))
                       or (params.startswith("'") and params.endswith("'"))):
            params = params[1:-1]
        line_fn, cell_fn = self.find("line", target), self.find("cell", target)
        do_line, do_cell = args.line, args.cell
        if not do_line and not do_cell:
            do_line, do_cell = line_fn is not None, cell_fn is not None
        if do_line and line_fn is None:
            raise UsageError("Line magic function `%%%s` not found." % target)
        if do_cell and cell_fn is None:
            raise UsageError("Cell magic function `%%%%%s` not found." % target)
        if not do_line and not do_cell:
            raise UsageError("No line or cell magic with name `%s` found." % target)
        shown = target + (" " + params if params else "")
        for kind, fn, esc in (("line", line_fn, "%"), ("cell", cell_fn, "%%")):
            if (kind == "line" and do_line) or (kind == "cell" and do_cell):
                self.register(kind, name, _make_alias(fn, kind, target, params))
                print("Created `%s%s` as an alias for `%s%s`." % (esc, name, esc, shown))

    def line_colors(self, line):
        """%colors NoColor|Linux|LightBG|Neutral: the colours of tracebacks
        and of the pager's help."""
        scheme = line.strip()
        if not scheme:
            raise UsageError("%colors: you must specify a color scheme. See '%colors?'")
        from cellbox import _traceback
        import warnings
        ok = [s for s in _traceback.SCHEMES if s.lower() == scheme.lower()]
        if not ok:
            warnings.warn("Error changing shell color schemes.\nThe 'colors' trait of a ZMQInteractiveShell instance "
                          "expected any of ['Neutral', 'NoColor', 'LightBG', 'Linux'] (case-insensitive), not the "
                          "str %r." % scheme, stacklevel=2)
            warnings.warn("Error changing exception color schemes.\nUnrecognized color scheme: %s\n"
                          "Valid schemes: ['NoColor', 'Linux', 'LightBG', 'Neutral', '']" % scheme, stacklevel=2)
            warnings.warn("Error changing object inspector color schemes.\nUnrecognized color scheme: %s\n"
                          "Valid schemes: ['NoColor', 'Linux', 'LightBG', 'Neutral', '']" % scheme, stacklevel=2)
            return
        _traceback.set_colors(ok[0])
        self.shell.get_ipython().colors = ok[0]

    def line_doctest_mode(self, line):
        """%doctest_mode: plain reprs and plain tracebacks (as IPython's), or back."""
        from cellbox import _traceback
        from cellbox.display import get_formatter
        fmt = get_formatter()
        plain = fmt.formatters["text/plain"]
        st = getattr(self, "_doctest", None)
        if st is None:
            st = self._doctest = {"mode": False}
        if not st["mode"]:
            st.update(pprint=plain.pprint, xmode=_traceback.mode, active=list(fmt.active_types))
            plain.pprint = False
            fmt.active_types = ["text/plain"]
            self.line_xmode("Plain")
        else:
            plain.pprint = st["pprint"]
            fmt.active_types = st["active"]
            self.line_xmode(st["xmode"])
        st["mode"] = not st["mode"]
        print("Doctest mode is:", "ON" if st["mode"] else "OFF")

    def line_pprint(self, line):
        """%pprint: pretty printing of results on or off."""
        from cellbox.display import get_formatter
        plain = get_formatter().formatters["text/plain"]
        plain.pprint = bool(1 - bool(plain.pprint))
        print("Pretty printing has been turned", ["OFF", "ON"][plain.pprint])

    def line_gui(self, line):
        """%gui [NAME]: ipykernel's event loop integration; a headless cellbox
        kernel has no GUI loop and accepts the name, as ipykernel does."""
        return None

    def _magic_docs(self, brief=False, rest=False):
        """IPython's BasicMagics._magic_docs over cellbox's magics (with
        IPython's docstrings, as help on a magic shows them)."""
        from IPython.utils.text import dedent, indent
        tab = self.table()
        fmt = "**%s%s**::\n\n%s\n\n" if rest else "%s%s:\n%s\n"
        out = []
        for kind, esc in (("line", "%"), ("cell", "%%")):
            for name in sorted(tab[kind]):
                if self._hidden(kind, name):
                    continue
                doc = getattr(self._magic_object(kind, name, tab[kind][name]), "__doc__", None)
                if doc:
                    doc = doc.split("\n", 1)[0] if brief else doc.rstrip()
                else:
                    doc = "No documentation"
                out.append(fmt % (esc, name, indent(dedent(doc))))
        return "".join(out)

    def show_usage(self):
        """A cell that is only `?`: IPython's introduction, in the pager."""
        try:
            from IPython.core.usage import interactive_usage
        except ImportError:
            raise UsageError("? shows IPython's introduction: it needs IPython (apt-get install python3-ipython)") from None
        self._page(interactive_usage)

    def line_quickref(self, line):
        """%quickref: IPython's quick reference card, in the pager."""
        try:
            from IPython.core.usage import quick_reference
        except ImportError:
            raise UsageError("%quickref needs IPython (apt-get install python3-ipython)") from None
        self._page(quick_reference + self._magic_docs(brief=True))

    def line_magic(self, line):
        """%magic [-latex] [-brief] [-rest]: the magic system's help, in the pager."""
        try:
            from IPython.core.usage import quick_reference  # noqa: F401 (IPython is there)
            from IPython.core.magics.basic import BasicMagics
        except ImportError:
            raise UsageError("%magic needs IPython (apt-get install python3-ipython)") from None
        import types
        mode = ""
        try:
            mode = line.split()[0][1:]
        except IndexError:
            pass
        brief = mode == "brief"
        rest = mode == "rest"
        magic_docs = self._magic_docs(brief, rest)
        if mode == "latex":
            fake = types.SimpleNamespace(format_latex=BasicMagics.format_latex)
            print(BasicMagics.format_latex(fake, magic_docs))
            return
        magic_docs = BasicMagics.format_screen(None, magic_docs) if hasattr(BasicMagics, "format_screen") else magic_docs
        out = ["""
IPython's 'magic' functions
===========================

The magic function system provides a series of functions which allow you to
control the behavior of IPython itself, plus a lot of system-type
features. There are two kinds of magics, line-oriented and cell-oriented.

Line magics are prefixed with the % character and work much like OS
command-line calls: they get as an argument the rest of the line, where
arguments are passed without parentheses or quotes.  For example, this will
time the given statement::

        %timeit range(1000)

Cell magics are prefixed with a double %%, and they are functions that get as
an argument not only the rest of the line, but also the lines below it in a
separate argument.  These magics are called with two arguments: the rest of the
call line and the body of the cell, consisting of the lines below the first.
For example::

        %%timeit x = numpy.random.randn((100, 100))
        numpy.linalg.svd(x)

will time the execution of the numpy svd routine, running the assignment of x
as part of the setup phase, which is not timed.

In a line-oriented client (the terminal or Qt console IPython), starting a new
input with %% will automatically enter cell mode, and IPython will continue
reading input until a blank line is given.  In the notebook, simply type the
whole cell as one entity, but keep in mind that the %% escape can only be at
the very start of the cell.

NOTE: If you have 'automagic' enabled (via the command line option or with the
%automagic function), you don't need to type in the % explicitly for line
magics; cell magics always require an explicit '%%' escape.  By default,
IPython ships with automagic on, so you should only rarely need the % escape.

Example: typing '%cd mydir' (without the quotes) changes your working directory
to 'mydir', if it exists.

For a list of the available magic functions, use %lsmagic. For a description
of any of them, type %magic_name?, e.g. '%cd?'.

Currently the magic system has the following functions:""",
               magic_docs,
               "Summary of magic functions (from %slsmagic):" % "%",
               str(_LSMagic(self)),
               ]
        self._page("\n".join(out))

    def line_notebook(self, line):
        """%notebook FILENAME: this session's input history as a new notebook."""
        p = _arg_parser("%notebook")
        p.add_argument("filename", type=str)
        args = p.parse_args(_arg_split(line, posix=True))
        outfname = os.path.expanduser(args.filename)
        from nbformat import write, v4
        hist = [(i, src) for i, src in enumerate(self.shell._in) if i > 0]
        if len(hist) <= 1:
            raise ValueError("History is empty, cannot export")
        cells = [v4.new_code_cell(execution_count=n, source=src) for n, src in hist[:-1]]
        nb = v4.new_notebook(cells=cells)
        with open(outfname, "w", encoding="utf-8") as f:
            write(nb, f, version=4)

    # -- IPython's AutoMagics and AsyncMagics -------------------------------------------
    def line_autocall(self, line):
        """%autocall [0|1|2]: call callables without parentheses (`f 1` is f(1))."""
        arg = line.strip()
        if arg:
            try:
                val = int(arg)
            except ValueError:
                val = None
            if val not in (0, 1, 2):
                import logging
                logging.error("Valid modes: 0->Off, 1->Smart, 2->Full")
                return
            self.shell.autocall = val
        elif self.shell.autocall:
            self._last_autocall = self.shell.autocall
            self.shell.autocall = 0
        else:
            self.shell.autocall = getattr(self, "_last_autocall", 1)
        print("Automatic calling is:", ["Off", "Smart", "Full"][self.shell.autocall])

    def line_autoawait(self, line):
        """%autoawait [on|off|asyncio]: top-level await in cells, or not."""
        arg = line.strip()
        if not arg:
            print("IPython autoawait is `%s`, and set to use `%s`" % ("on" if self.shell.autoawait else "off",
                                                                      "asyncio"))
            return
        low = arg.lower()
        on = None
        if low in ("false", "off", "0"):
            on = False
        elif low in ("true", "on", "1") or arg == "asyncio":
            on = True
        if on is not None:
            from cellbox._kernel import _TOP_LEVEL_AWAIT
            self.shell.autoawait = on
            self.shell._await_flag = _TOP_LEVEL_AWAIT if on else 0
            return
        if "." in arg:
            import importlib
            mod, _, attr = arg.rpartition(".")
            getattr(importlib.import_module(mod), attr)
        else:
            __import__(arg)
        raise UsageError("cellbox runs top-level await on asyncio only, not %r" % arg)

    # -- IPython's ExecutionMagics.macro, CodeMagics.loadpy/pastebin -------------------------
    def line_macro(self, line):
        """%macro [-r] [-q] NAME RANGES: cells of the history as a Macro, run
        by typing its name."""
        opts, args = _parse_options(line, "rq", mode="list")
        if not args:
            return []
        name, codefrom = args[0], " ".join(args[1:])
        from IPython.core.macro import Macro
        try:
            lines = self._user_code(codefrom, "r" in opts)
        except (ValueError, TypeError) as e:
            print(e.args[0])
            return
        macro = Macro(lines)
        self.shell.user_ns[name] = macro
        if "q" not in opts:
            print("Macro `%s` created. To execute, type its name (without quotes)." % name)
            print("=== Macro contents: ===")
            print(macro, end=" ")

    def line_loadpy(self, line):
        """Alias of `%load`"""
        return self.line_load(line)

    def line_pastebin(self, line):
        """%pastebin [-d DESC] [-e N] RANGE: upload code to dpaste.com."""
        opts, args = _parse_options(line, "d:e:")
        try:
            code = self._user_code(args, True)
        except (ValueError, TypeError) as e:
            print(e.args[0])
            return
        import json as _json
        from urllib.parse import urlencode
        from urllib.request import Request, urlopen
        post_data = urlencode({"title": opts.get("d", "Pasted from IPython"), "syntax": "python",
                               "content": code, "expiry_days": opts.get("e", 7)}).encode("utf-8")
        req = Request("https://dpaste.com/api/v2/", headers={"User-Agent": "IPython v8"})
        response = urlopen(req, post_data)
        return response.headers.get("Location")

    # -- IPython's LoggingMagics --------------------------------------------------------
    def _logger(self):
        lg = getattr(self, "_log", None)
        if lg is None:
            from IPython.core.logger import Logger
            lg = self._log = Logger(os.getcwd(), logfname="ipython_log.py", logmode="rotate")
        return lg

    def line_logstart(self, line):
        """%logstart [-o|-r|-t|-q] [log_name [log_mode]]: log the session's input to a file."""
        opts, par = _parse_options(line, "ortq")
        log_output, log_raw_input, timestamp, quiet = ("o" in opts, "r" in opts, "t" in opts, "q" in opts)
        logger = self._logger()
        par = par.strip()
        if not par:
            logfname, logmode = "ipython_log.py", "rotate"
        else:
            try:
                logfname, logmode = par.split()
            except ValueError:
                logfname, logmode = par, "backup"
        import textwrap
        from IPython.core.release import version
        header = textwrap.dedent("""\
            # IPython log file

            """)
        loghead = "# IPython log file\n\n" if header else ""
        try:
            logger.logstart(logfname, loghead, logmode, log_output, timestamp, log_raw_input)
        except Exception:
            import warnings
            warnings.warn("Couldn't start log: %s" % sys.exc_info()[1], stacklevel=2)
            return
        # this cell and the ones before it
        log_write = logger.log_write
        for n in range(1, len(self.shell._in)):
            src = self.shell._in[n]
            if src:
                log_write((src if log_raw_input else self._translated(src)).rstrip("\n") + "\n")
            if log_output and n in self.shell._out:
                log_write(repr(self.shell._out[n]), "output")
        logger.timestamp = False
        self._log_last = len(self.shell._in)
        if self._log_hook not in self.shell.pre_execute:
            self.shell.pre_execute.append(self._log_hook)
        if not quiet:
            print("Activating auto-logging. Current session state plus future input saved.")
            logger.logstate()
        logger.timestamp = timestamp

    def _log_hook(self):
        """Before each cell: the cell's input into the log (as IPython logs it)."""
        lg = getattr(self, "_log", None)
        if lg is None or not lg.log_active:
            return
        n = len(self.shell._in) - 1
        if n < getattr(self, "_log_last", 0):
            return
        self._log_last = n + 1
        src = self.shell._in[n]
        if src:
            lg.log(self._translated(src).rstrip("\n") + "\n", src)

    def _translated(self, src):
        """A cell as IPython runs it (its history's translated form), quietly."""
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):
            return self.shell._transform(src)

    def line_logstop(self, line):
        """%logstop: stop logging and close the log file."""
        lg = getattr(self, "_log", None)
        if lg is None:
            print("Logging hadn't been started.")
            return
        lg.logstop()
        self._log = None
        if self._log_hook in self.shell.pre_execute:
            self.shell.pre_execute.remove(self._log_hook)

    def line_logoff(self, line):
        """%logoff: stop logging for a while (%logon goes on)."""
        self._loggerish().switch_log(0)

    def line_logon(self, line):
        """%logon: go on logging after %logoff."""
        self._loggerish().switch_log(1)

    def line_logstate(self, line):
        """%logstate: the state of the log."""
        self._loggerish().logstate()

    def _loggerish(self):
        lg = getattr(self, "_log", None)
        if lg is None:
            from IPython.core.logger import Logger
            return Logger(os.getcwd(), logfname="ipython_log.py", logmode="rotate")
        return lg

    # -- ipykernel's KernelMagics ------------------------------------------------------
    def line_edit(self, line):
        """%edit [-p] [-r] [-n N] [FILE | RANGE | NAME]: ask the frontend to edit
        a file (ipykernel's edit_magic payload)."""
        opts, args = _parse_options(line, "prn:")
        lineno = opts.get("n")
        target = args.strip()
        filename = None
        if target:
            path = os.path.expanduser(target)
            if os.path.isfile(path) or not self._history(target, True):
                if not os.path.exists(path) and os.path.splitext(path)[1] == "" and not self._history(target, True):
                    pass
                filename = path
        if filename is None:
            import tempfile
            d = tempfile.mkdtemp(prefix="ipython_edit_")
            fd, filename = tempfile.mkstemp(".py", "ipython_edit_", d)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                if target:
                    f.write(self._user_code(target, "r" in opts))
            print("IPython will make a temporary file named:", filename)
        self.shell.payload.append({"source": "edit_magic", "filename": os.path.abspath(filename),
                                   "line_number": lineno})

    line_ed = line_edit

    def line_clear(self, line):
        """Clear the terminal."""
        self.system("clear")

    def line_man(self, line):
        """Find the man page for the given command and display in pager."""
        r = subprocess.run("man %s | col -b" % line, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           executable="/bin/bash" if os.path.exists("/bin/bash") else None)
        self._page(r.stdout.decode("utf-8", "replace"))

    def line_autosave(self, line):
        """%autosave SECONDS: the notebook's autosave interval (0: none)."""
        try:
            interval = int(line)
        except ValueError as e:
            raise UsageError("%%autosave requires an integer, got %r" % line) from e
        from cellbox import display as d
        d.publish_display_data({"application/javascript": "IPython.notebook.set_autosave_interval(%i)"
                                % (interval * 1000)})
        print("Autosaving every %i seconds" % interval if interval else "Autosave disabled")

    def _connection_file(self):
        get = getattr(_cellbox_c, "connection_file", None)   # the kernel's own word, when it has it
        if get is not None:
            try:
                cf = get()
            except Exception:
                cf = None
            if cf:
                return cf
        try:
            with open("/proc/self/cmdline", "rb") as f:
                argv = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            return None
        for i, a in enumerate(argv):
            if a in ("-f", "--connection-file", "--existing") and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith("--connection-file=") or a.startswith("-f="):
                return a.split("=", 1)[1]
        return None

    def line_connect_info(self, line):
        """Print information for connecting other clients to this kernel."""
        connection_file = self._connection_file()
        try:
            with open(connection_file) as f:
                info = f.read()
        except Exception as e:
            print("Could not get connection info: %r" % e)
            return
        try:
            from jupyter_core.paths import jupyter_runtime_dir
            if jupyter_runtime_dir() == os.path.dirname(connection_file):
                connection_file = os.path.basename(connection_file)
        except ImportError:
            pass
        print(info + "\n")
        print("Paste the above JSON into a file, and connect with:\n"
              "    $> jupyter <app> --existing <file>\n"
              "or, if you are local, you can connect with just:\n"
              "    $> jupyter <app> --existing %s\n"
              "or even just:\n"
              "    $> jupyter <app> --existing\n"
              "if this is the most recent Jupyter kernel you have started." % connection_file)

    def line_qtconsole(self, line):
        """Open a qtconsole connected to this kernel."""
        cf = self._connection_file()
        try:
            subprocess.Popen([sys.executable if os.path.basename(sys.executable).startswith("python")
                              else "python3", "-m", "qtconsole", "--existing", cf or ""] + _arg_split(line, True),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except Exception as e:
            import warnings
            warnings.warn("Could not start qtconsole: %r" % e)

    # -- IPython's OSMagics.sc, rehashx; ScriptMagics.killbgscripts; PylabMagics.pylab ---
    def line_sc(self, line):
        """%sc [-l] [-v] VAR = CMD: a shell command's output into a variable (deprecated)."""
        opts, arg = _parse_options(line, "lv")
        var, _, cmd = arg.partition("=")
        var, cmd = var.strip(), cmd.strip()
        if not var or not cmd:
            raise UsageError("Bad input. Try `%sc?` for help.")   # as IPython's misspelled message
        split = "l" in opts
        out = self.getoutput(cmd)
        value = SList(out) if split else "".join(line + "\n" for line in out)
        self.shell.user_ns[var] = value
        if "v" in opts:
            print("%s ==\n%s" % (var, value))

    def line_rehashx(self, line):
        """%rehashx: an alias for every executable in $PATH."""
        names = []
        for d in os.environ.get("PATH", "").split(os.pathsep):
            try:
                entries = os.listdir(d)
            except OSError:
                continue
            for ff in entries:
                p = os.path.join(d, ff)
                if os.path.isfile(p) and os.access(p, os.X_OK):
                    key = ff.replace(".", "")
                    if key not in _ALIAS_BLACKLIST and key.isidentifier():
                        names.append((key, ff))
        for key, ff in names:
            try:
                self._define_alias(key, ff, check=False)
            except ValueError:
                pass

    def line_killbgscripts(self, line):
        """Kill all BG processes started by %%script and its family."""
        print("All background processes were killed.")

    def line_pylab(self, line):
        """%pylab [GUI]: %matplotlib plus numpy and pyplot in the namespace (deprecated)."""
        p = _arg_parser("%pylab")
        p.add_argument("--no-import-all", action="store_true")
        p.add_argument("gui", nargs="?")
        args = p.parse_args(_arg_split(line, posix=True))
        print("%pylab is deprecated, use %matplotlib inline and import the required libraries.")
        print("Populating the interactive namespace from numpy and matplotlib")
        self.line_matplotlib(args.gui or "")
        ns = self.shell.user_ns
        exec("import numpy\nimport matplotlib\nfrom matplotlib import pylab, mlab, pyplot\nnp = numpy\nplt = pyplot\n",
             ns)
        if not args.no_import_all:
            exec("from pylab import *\nfrom numpy import *\n", ns)

    def line_history(self, line):
        """%history [-n] [-o] [-p] [-t] [-f FILENAME] [-g [PATTERN ...]]
        [-l [LIMIT]] [-u] [range ...]: the input history, as IPython's."""
        import fnmatch
        from cellbox._kernel import StdinNotImplementedError
        unspecified = object()
        p = _arg_parser("%history")
        p.add_argument("-n", dest="print_nums", action="store_true", default=False)
        p.add_argument("-o", dest="get_output", action="store_true", default=False)
        p.add_argument("-p", dest="pyprompts", action="store_true", default=False)
        p.add_argument("-t", dest="raw", action="store_false", default=True)
        p.add_argument("-f", dest="filename")
        p.add_argument("-g", dest="pattern", nargs="*", default=None)
        p.add_argument("-l", dest="limit", type=int, nargs="?", default=unspecified)
        p.add_argument("-u", dest="unique", action="store_true")
        p.add_argument("range", nargs="*")
        args = p.parse_args(_arg_split(line))
        hm = self.shell.get_ipython().history_manager

        def lineno(session, n):
            if session in (0, hm.session_number):
                return str(n)
            return "%s/%s" % (session, n)

        outfname = args.filename
        if not outfname:
            outfile, close_at_end = sys.stdout, False
        else:
            outfname = os.path.expanduser(outfname)
            if os.path.exists(outfname):
                try:
                    ans = _ask_yes_no("File %r exists. Overwrite?" % outfname)
                except StdinNotImplementedError:
                    ans = True
                if not ans:
                    print("Aborting.")
                    return
                print("Overwriting file.")
            outfile, close_at_end = open(outfname, "w", encoding="utf-8"), True
        print_nums, get_output, pyprompts, raw = args.print_nums, args.get_output, args.pyprompts, args.raw
        limit = None if args.limit is unspecified else args.limit
        range_pattern = False
        if args.pattern is not None and not args.range:
            pattern = "*" + " ".join(args.pattern) + "*" if args.pattern else "*"
            hist = hm.search(pattern, raw=raw, output=get_output, n=limit, unique=args.unique)
            print_nums = True
        elif args.limit is not unspecified:
            hist = hm.get_tail(10 if limit is None else limit, raw=raw, output=get_output)
        else:
            if args.pattern:
                range_pattern = "*" + " ".join(args.pattern) + "*"
                print_nums = True
            hist = hm.get_range_by_str(" ".join(args.range), raw, get_output)
        try:
            for session, n, inline in hist:
                output = None
                if get_output:
                    inline, output = inline
                if range_pattern and not fnmatch.fnmatch(inline, range_pattern):
                    continue
                inline = inline.expandtabs(4).rstrip()
                multiline = "\n" in inline
                if print_nums:
                    print("%s:%s" % (lineno(session, n).rjust(4), "\n" if multiline else " "), file=outfile, end="")
                if pyprompts:
                    print(">>> ", end="", file=outfile)
                    if multiline:
                        inline = "\n... ".join(inline.splitlines()) + "\n..."
                print(inline, file=outfile)
                if get_output and output:
                    print(output, file=outfile)
        finally:
            if close_at_end:
                outfile.close()

    def line_precision(self, line):
        """%precision [N | %fmt]: how floats are shown (IPython's); the new
        format is the result."""
        from cellbox.display import get_formatter
        plain = get_formatter().formatters["text/plain"]
        plain.float_precision = line.strip()
        return plain.float_format


def _pump(p, body, capture_out=False, capture_err=False):
    """Feed body to a process's stdin while its stdout and stderr go to
    sys.stdout and sys.stderr as they come (so %%capture sees them), or into
    the returned texts when captured. -> (stdout text, stderr text)"""
    import codecs
    import selectors
    import select
    sinks = {}
    for f, stream, keep in ((p.stdout, sys.stdout, capture_out), (p.stderr, sys.stderr, capture_err)):
        sinks[f] = (codecs.getincrementaldecoder("utf-8")("replace"), None if keep else stream, [])
    offset = 0
    with selectors.DefaultSelector() as sel:
        sel.register(p.stdin, selectors.EVENT_WRITE)
        for f in sinks:
            sel.register(f, selectors.EVENT_READ)
        while sel.get_map():
            for key, _ in sel.select():
                f = key.fileobj
                if f is p.stdin:
                    try:
                        offset += os.write(f.fileno(), body[offset:offset + select.PIPE_BUF])
                    except BrokenPipeError:   # the program does not read all of it
                        offset = len(body)
                    if offset >= len(body):
                        sel.unregister(f)
                        f.close()
                    continue
                data = os.read(f.fileno(), 65536)
                decoder, stream, kept = sinks[f]
                text = decoder.decode(data, final=not data)
                if not data:
                    sel.unregister(f)
                if stream is None:
                    kept.append(text)
                elif text:
                    stream.write(text)
                    stream.flush()
    p.wait()
    return "".join(sinks[p.stdout][2]), "".join(sinks[p.stderr][2])


def _ask_yes_no(prompt, default=None):
    """IPython's ask_yes_no, through input() (so an input request)."""
    answers = {"y": True, "n": False, "yes": True, "no": False}
    ans = None
    while ans not in answers:
        try:
            ans = input(prompt + " ").lower() or default
        except KeyboardInterrupt:
            print("\r")
        except EOFError:
            if default in answers:
                ans = default
                print()
            else:
                raise
    return answers[ans]


class _Alias:
    """A shell command run as a line magic (IPython's Alias): %s takes the
    next word of the line, %l the whole line; the rest goes after it."""

    def __init__(self, magics, name, cmd, nargs):
        self.magics, self.name, self.cmd, self.nargs = magics, name, cmd, nargs
        self.__doc__ = "Alias for `!%s`" % cmd

    def __call__(self, rest=""):
        cmd = self.cmd
        if "%l" in cmd:
            cmd, rest = cmd.replace("%l", rest), ""
        if self.nargs == 0:
            if cmd.find("%%s") >= 1:
                cmd = cmd.replace("%%s", "%s")
            cmd = "%s %s" % (cmd, rest)
        else:
            args = rest.split(None, self.nargs)
            if len(args) < self.nargs:
                raise UsageError("Alias <%s> requires %s arguments, %s given." % (self.name, self.nargs, len(args)))
            cmd = "%s %s" % (cmd % tuple(args[:self.nargs]), " ".join(args[self.nargs:]))
        return self.magics.system(cmd)

    def __repr__(self):
        return "<alias %s for %r>" % (self.name, self.cmd)


class _DebuggerShell:
    """What IPython's debugger asks of its shell, over get_ipython(): editor
    hooks (none here), the exception line, and the ? / ?? / pdef... commands
    (shown in the debugger's output, in the frame's namespaces)."""

    def __init__(self, facade):
        self._facade = facade
        self.hooks = self

    def __getattr__(self, name):
        return getattr(self._facade, name)

    def synchronize_with_editor(self, *args, **kwargs):
        pass

    def get_exception_only(self, exc_tuple=None):
        import traceback
        etype, value = (exc_tuple or sys.exc_info())[:2]
        return "".join(traceback.format_exception_only(etype, value))

    def find_line_magic(self, name):
        if name in ("pinfo", "pinfo2", "pdef", "pdoc", "psource", "pfile"):
            return lambda arg, namespaces=(): self._info(name, arg.strip(), namespaces)
        return self._facade.find_line_magic(name)

    def _info(self, kind, name, namespaces):
        import inspect
        for _, ns in namespaces:
            try:
                obj = eval(name, {}, ns)
                break
            except Exception:
                continue
        else:
            print("Object `%s` not found." % name)
            return
        try:
            if kind in ("pinfo", "pinfo2"):
                from cellbox._inspect import info_text
                text = info_text(obj, name, 1 if kind == "pinfo2" else 0)
            elif kind == "pdef":
                text = name + str(inspect.signature(obj))
            elif kind == "pdoc":
                text = inspect.getdoc(obj) or "No documentation found for %s" % name
            elif kind == "psource":
                text = inspect.getsource(obj)
            else:
                text = open(inspect.getsourcefile(obj), encoding="utf-8").read()
        except (TypeError, ValueError, OSError) as e:
            text = "%s: %s" % (type(e).__name__, e)
        print(text)


class RichOutput:
    """One captured rich output (IPython.utils.capture.RichOutput)."""

    def __init__(self, data=None, metadata=None):
        self.data = data or {}
        self.metadata = metadata or {}

    def display(self):
        from cellbox import display as d
        d.publish_display_data(self.data, self.metadata)

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata


class CapturedIO:
    """What %%capture kept (IPython.utils.capture.CapturedIO): .stdout,
    .stderr, .outputs; show() or calling it replays them."""

    def __init__(self, stdout, stderr, outputs=None):
        self._stdout, self._stderr = stdout, stderr
        self.outputs = outputs or []

    def __str__(self):
        return self._stdout

    @property
    def stdout(self):
        return self._stdout

    @property
    def stderr(self):
        return self._stderr

    def show(self):
        sys.stdout.write(self._stdout)
        sys.stderr.write(self._stderr)
        for o in self.outputs:
            o.display()

    __call__ = show


class SList(list):
    """List of output lines (what `x = !cmd` gives), with .s / .n / .l like IPython."""

    @property
    def s(self):
        return " ".join(self)

    @property
    def n(self):
        return "\n".join(self)

    @property
    def l(self):
        return list(self)


class TimeitResult:
    """IPython's TimeitResult: loops, repeat, best, worst, all_runs,
    compile_time, timings (per loop), average, stdev; shown as
    "<TimeitResult : ...>"."""

    def __init__(self, loops, repeat, best, worst, all_runs, compile_time, precision):
        self.loops = loops
        self.repeat = repeat
        self.best = best
        self.worst = worst
        self.all_runs = all_runs
        self.compile_time = compile_time
        self._precision = precision
        self.timings = [dt / self.loops for dt in all_runs]

    @property
    def average(self):
        import math
        return math.fsum(self.timings) / len(self.timings)

    @property
    def stdev(self):
        import math
        mean = self.average
        return (math.fsum([(x - mean) ** 2 for x in self.timings]) / len(self.timings)) ** 0.5

    def __str__(self):
        return "{mean} \xb1 {std} per loop (mean \xb1 std. dev. of {runs} run{rp}, {loops:,} loop{lp} each)".format(
            mean=_fmt_time(self.average, self._precision), std=_fmt_time(self.stdev, self._precision),
            runs=self.repeat, rp="" if self.repeat == 1 else "s", loops=self.loops, lp="" if self.loops == 1 else "s")

    def _repr_pretty_(self, p, cycle):
        p.text("<TimeitResult : " + str(self) + ">")


# IPython's Magics class of each magic cellbox implements (%lsmagic's JSON,
# and where help on a magic finds IPython's docstring)
def _classes(spec):
    out = {}
    for cls, names in spec.items():
        for n in names.split():
            out[n] = cls
    return out


_MAGIC_CLASSES = {
    "line": _classes({
        "AutoMagics": "automagic autocall",
        "BasicMagics": "alias_magic lsmagic magic page pprint colors xmode quickref doctest_mode gui precision notebook",
        "CodeMagics": "save pastebin loadpy load", "KernelMagics": "edit clear less more man connect_info qtconsole autosave",
        "ConfigMagics": "config", "ExecutionMagics": "prun pdb debug tb run timeit time macro",
        "ExtensionMagics": "load_ext unload_ext reload_ext", "HistoryMagics": "history recall rerun",
        "LoggingMagics": "logstart logstop logoff logon logstate",
        "NamespaceMagics": "pinfo pinfo2 pdef pdoc psource pfile psearch who_ls who whos reset reset_selective xdel",
        "OSMagics": "alias unalias rehashx pwd cd env set_env pushd popd dirs dhist sc sx system bookmark pycat",
        "PackagingMagics": "pip conda", "PylabMagics": "matplotlib pylab", "ScriptMagics": "killbgscripts",
        "AsyncMagics": "autoawait", "StoreMagics": "store", "AutoreloadMagics": "autoreload aimport",
    }),
    "cell": _classes({
        "DisplayMagics": "js javascript latex svg html markdown", "ExecutionMagics": "prun debug timeit time capture",
        "OSMagics": "sx system ! writefile", "ScriptMagics": "script",
    }),
}
_MAGIC_MODULES = {
    "AutoMagics": "IPython.core.magics.auto", "BasicMagics": "IPython.core.magics.basic",
    "AsyncMagics": "IPython.core.magics.basic", "CodeMagics": "IPython.core.magics.code",
    "ConfigMagics": "IPython.core.magics.config", "DisplayMagics": "IPython.core.magics.display",
    "ExecutionMagics": "IPython.core.magics.execution", "ExtensionMagics": "IPython.core.magics.extension",
    "HistoryMagics": "IPython.core.magics.history", "LoggingMagics": "IPython.core.magics.logging",
    "NamespaceMagics": "IPython.core.magics.namespace", "OSMagics": "IPython.core.magics.osm",
    "PackagingMagics": "IPython.core.magics.packaging", "PylabMagics": "IPython.core.magics.pylab",
    "ScriptMagics": "IPython.core.magics.script", "KernelMagics": "ipykernel.zmqshell",
    "StoreMagics": "IPython.extensions.storemagic", "AutoreloadMagics": "IPython.extensions.autoreload",
}
# IPython's MagicAlias magics: (kind, name) -> the magic they stand for
_MAGIC_ALIASES = {("line", "ed"): "edit", ("line", "hist"): "history", ("line", "rep"): "recall",
                  ("cell", "HTML"): "html", ("cell", "SVG"): "svg", ("cell", "file"): "writefile"}
_SCRIPT_MAGICS = ("sh", "bash", "perl", "ruby", "python", "python2", "python3", "pypy")


class _LSMagic:
    """%lsmagic's value (IPython's MagicsDisplay): the lists as text, the
    class of each magic as JSON."""

    def __init__(self, magics):
        self.magics = magics

    def _tables(self):
        m = self.magics
        tab = m.table()
        return {kind: {n: fn for n, fn in sorted(tab[kind].items()) if not m._hidden(kind, n)} for kind in m.KINDS}

    def _lsmagic(self):
        tab = self._tables()
        auto = ("Automagic is ON, % prefix IS NOT needed for line magics." if self.magics.shell.automagic
                else "Automagic is OFF, % prefix IS needed for line magics.")
        return "\n".join(["Available line magics:", "%" + "  %".join(sorted(tab["line"])), "",
                          "Available cell magics:", "%%" + "  %%".join(sorted(tab["cell"])), "", auto])

    def __str__(self):
        return self._lsmagic()

    def _repr_pretty_(self, p, cycle):
        p.text(self._lsmagic())

    def _repr_json_(self):
        m = self.magics
        return {kind: {n: m.class_of(kind, n, fn) for n, fn in tab.items()} for kind, tab in self._tables().items()}


def _make_alias(fn, kind, target, params):
    """%alias_magic's alias: the target with its parameters first."""
    if kind == "line":
        def alias(line="", *args, **kwargs):
            return fn((params + " " + line).strip() if params else line, *args, **kwargs)
    else:
        def alias(line="", cell=None, *args, **kwargs):
            return fn((params + " " + line).strip() if params else line, cell, *args, **kwargs)
    alias.__doc__ = "Alias for `%s%s`." % ("%" if kind == "line" else "%%", target)
    alias._cellbox_alias = (target, kind, params)
    alias._ipython_magic_no_var_expand = getattr(fn, "_ipython_magic_no_var_expand", False)
    return alias




def run_macro(shell, pre, ifun):
    """IPython's MacroHandler: a line that is a macro's name runs its lines."""
    obj = shell.user_ns.get(ifun)
    if obj is None:
        return pre + ifun + "\n"
    return pre + ("\n" + pre).join(obj.value.splitlines()) + "\n"


_AUTOCALL_EXCLUDE = re.compile(r"^[,&^\|\*/\+-]|^is |^not |^in |^and |^or ")
_FUN_NAME = re.compile(r"[a-zA-Z_]([a-zA-Z0-9_.]*)")


def autocall(shell, line, pre, ifun, rest):
    """IPython's AutocallChecker and AutoHandler (%autocall 1 or 2): `f 1`
    runs as f(1), and the rewritten line is shown."""
    import builtins
    if rest[:1] and rest[0] in "!=()<>,+*/%^&|":   # PythonOpsChecker
        return line
    found, obj = shell.magics._find_object(ifun)
    if not found:
        return line
    if ifun.lower() in ("b", "f", "r", "u", "br", "rb", "fr", "rf") and line.lstrip().startswith((ifun + "'", ifun + '"')):
        return line
    if not (callable(obj) and not _AUTOCALL_EXCLUDE.match(rest) and _FUN_NAME.match(ifun)):
        return line
    if not rest:
        do_rewrite = shell.autocall >= 2
    elif rest.startswith("[") and hasattr(obj, "__getitem__"):
        do_rewrite = False
    else:
        do_rewrite = True
    if not do_rewrite:
        return line
    if rest.endswith(";"):
        newcmd = "%s(%s);" % (ifun.rstrip(), rest[:-1])
    else:
        newcmd = "%s(%s)" % (ifun.rstrip(), rest)
    try:
        show = getattr(obj, "rewrite", True)
    except Exception:
        show = True
    if show:
        print("------> " + newcmd)
    del builtins
    return pre + newcmd + "\n"
