"""IPython-style magics for the cellbox kernel.

Line magics (``%name args``) and cell magics (``%%name args`` + body) are
methods named ``line_<name>`` / ``cell_<name>``. An unknown magic raises
UsageError (a clear error, never a SyntaxError).
"""
import ast
import os
import re
import shlex
import subprocess
import sys
import time

import _cellbox_c


class UsageError(Exception):
    """Wrong use of a magic."""


UsageError.__module__ = "builtins"  # shows as "UsageError", as in IPython


def _fmt_time(t):
    """IPython's _format_time: 3 significant digits with the best unit."""
    if t >= 60:
        m, s = divmod(t, 60)
        h, m = divmod(m, 60)
        parts = []
        if h:
            parts.append("%dh" % h)
        if m:
            parts.append("%dmin" % m)
        parts.append("%ds" % s)
        return " ".join(parts)
    units = ["s", "ms", "\xb5s", "ns"]
    scale = [1.0, 1e3, 1e6, 1e9]
    order = min(-int((__import__("math").floor(__import__("math").log10(t)) // 3)) if t > 0 else 3, 3)
    order = max(order, 0)
    return "%.*g %s" % (3, t * scale[order], units[order])


class Magics:
    """cellbox's own magics (methods) and the ones users and extensions
    register (IPython's register_magic_function / register_magics), which
    take precedence, as in IPython."""

    KINDS = ("line", "cell")

    def __init__(self, shell):
        self.shell = shell
        self.autoreload = None
        self.user = {"line": {}, "cell": {}}   # name -> callable

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
        # needs_local_scope passes the namespace the magic runs in
        if not getattr(fn, "_ipython_magic_no_var_expand", False):
            args = (self._expand(args[0]),) + args[1:]
        if getattr(fn, "needs_local_scope", False):
            return fn(*args, local_ns=self.shell.user_ns)
        return fn(*args)

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

    def _expand(self, text):
        """$name and {expr} substitution from the user namespace, as IPython."""
        if "$" not in text and "{" not in text:
            return text
        ns = self.shell.user_ns

        def brace(m):
            try:
                return str(eval(m.group(1), ns))
            except Exception:
                return m.group(0)

        text = re.sub(r"(?<!\{)\{([^{}]+)\}(?!\})", brace, text)

        def dollar(m):
            if m.group(1) in ns:
                return str(ns[m.group(1)])
            return m.group(0)

        return re.sub(r"(?<!\$)\$([A-Za-z_]\w*)", dollar, text).replace("$$", "$")

    def names(self):
        tab = self.table()
        return sorted(tab["line"]), sorted(tab["cell"])

    # -- shell -------------------------------------------------------------------
    def system(self, cmd):
        """!cmd: run by /bin/sh on a pseudo-terminal, like IPython (pexpect):
        programs see a terminal, stderr is merged, lines end in \\r\\n, and
        the output streams as it comes."""
        import codecs
        import pty
        import signal
        cmd = self._expand(cmd)
        _cellbox_c.flush()
        master, slave = pty.openpty()
        try:
            p = subprocess.Popen(["/bin/sh", "-c", cmd], stdin=slave, stdout=slave, stderr=slave,
                                 start_new_session=True, close_fds=True)
        finally:
            os.close(slave)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        out = sys.stdout
        try:
            try:
                while True:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: every writer of the terminal is gone
                        break
                    if not data:
                        break
                    out.write(decoder.decode(data))
                out.write(decoder.decode(b"", final=True))
                rc = p.wait()
            except KeyboardInterrupt:
                # like ^C on the terminal (and IPython): the command gets
                # SIGINT, the cell goes on
                try:
                    os.killpg(p.pid, signal.SIGINT)
                    p.wait(1)
                except (OSError, subprocess.TimeoutExpired):
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

    def getoutput(self, cmd):
        cmd = self._expand(cmd)
        r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           executable="/bin/bash" if os.path.exists("/bin/bash") else None)
        self.shell.user_ns["_exit_code"] = r.returncode
        return SList(r.stdout.decode("utf-8", "replace").splitlines())

    def cell_bash(self, line, cell):
        return self._script("/bin/bash", cell)

    def cell_sh(self, line, cell):
        return self._script("/bin/sh", cell)

    def cell_script(self, line, cell):
        argv = shlex.split(line)
        if not argv:
            raise UsageError("%%script needs a program, e.g. %%script python3")
        return self._script(argv, cell)

    def _script(self, prog, cell):
        _cellbox_c.flush()
        argv = prog if isinstance(prog, list) else [prog]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE)
        try:
            p.communicate(cell.encode())
        except KeyboardInterrupt:
            p.kill()
            raise

    # -- files and folders --------------------------------------------------------
    def line_cd(self, line):
        target = line.strip() or os.path.expanduser("~")
        if target == "-":
            target = self.shell.user_ns.get("_dh", [os.getcwd()])[-2] if len(self.shell.user_ns.get("_dh", [])) > 1 else os.getcwd()
        target = os.path.expanduser(target.strip("'\""))
        try:
            os.chdir(target)
        except OSError as e:
            raise UsageError("cd: %s" % e)
        self.shell.user_ns.setdefault("_dh", []).append(os.getcwd())
        print(os.getcwd())

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
        k, _, v = line.partition(" ")
        os.environ[k] = v
        print("env: %s=%s" % (k, v))

    def cell_writefile(self, line, cell):
        args = shlex.split(line)
        append = False
        if args and args[0] in ("-a", "--append"):
            append = True
            args = args[1:]
        if len(args) != 1:
            raise UsageError("%%writefile [-a] FILENAME")
        path = os.path.expanduser(args[0])
        exists = os.path.exists(path)
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.write(cell)
        print("%s %s" % ("Appending to" if append else ("Overwriting" if exists else "Writing"), args[0]))

    def line_run(self, line):
        args = shlex.split(line)
        if not args:
            raise UsageError("%run FILE [ARGS...]")
        path = args[0]
        if not os.path.exists(path) and os.path.exists(path + ".py"):
            path += ".py"
        with open(path, encoding="utf-8") as f:
            src = f.read()
        save_argv = sys.argv
        sys.argv = [path] + args[1:]
        ns = self.shell.user_ns
        saved_name, saved_file = ns.get("__name__"), ns.get("__file__")
        ns["__file__"] = os.path.abspath(path)
        try:
            exec(compile(src, path, "exec"), ns)
        finally:
            sys.argv = save_argv
            ns["__name__"] = saved_name
            if saved_file is None:
                ns.pop("__file__", None)
            else:
                ns["__file__"] = saved_file

    def line_load(self, line):
        path = line.strip()
        with open(path, encoding="utf-8") as f:
            src = f.read()
        self.shell.payload.append({"source": "set_next_input", "text": "# %%load %s\n%s" % (path, src),
                                   "replace": True})

    def line_pip(self, line):
        self.system("%s -m pip %s" % (shlex.quote(sys.executable), line))
        print("Note: you may need to restart the kernel to use updated packages.")

    # -- timing -------------------------------------------------------------------
    def line_time(self, line):
        return self._time(line, None)

    def cell_time(self, line, cell):
        return self._time(line, cell)

    def _time(self, line, cell):
        ns = self.shell.user_ns
        src = cell if cell is not None else line
        from cellbox._transform import transform_cell
        src = transform_cell(src) if any(c in src for c in "%!?") else src
        tree = ast.parse(src, "<timed>")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        t0, c0 = time.perf_counter(), time.process_time()
        t_user0 = os.times()
        result = None
        if tree.body:
            exec(compile(tree, "<timed exec>", "exec"), ns)
        if last is not None:
            result = eval(compile(ast.Expression(last.value), "<timed eval>", "eval"), ns)
        wall = time.perf_counter() - t0
        t1 = os.times()
        user, system = t1.user - t_user0.user, t1.system - t_user0.system
        print("CPU times: user %s, sys: %s, total: %s" % (_fmt_time(user), _fmt_time(system), _fmt_time(user + system)))
        print("Wall time: %s" % _fmt_time(wall))
        return result if cell is None else None

    def line_timeit(self, line):
        return self._timeit(line, None)

    def cell_timeit(self, line, cell):
        return self._timeit(line, cell)

    def _timeit(self, line, cell):
        import timeit
        args = shlex.split(line, posix=False) if cell is not None else None
        number = repeat = None
        quiet = return_result = False
        rest = line
        opts = re.match(r"^\s*((?:-[nrqo]\s*\d*\s+)*)(.*)$", line, re.S)
        optstr, rest = opts.group(1), opts.group(2)
        for o in re.finditer(r"-([nrqo])\s*(\d*)", optstr):
            k, v = o.groups()
            if k == "n":
                number = int(v)
            elif k == "r":
                repeat = int(v)
            elif k == "q":
                quiet = True
            elif k == "o":
                return_result = True
        del args
        stmt, setup = (cell, rest) if cell is not None else (rest, "pass")
        ns = self.shell.user_ns
        t = timeit.Timer(stmt=stmt, setup=setup, globals=ns)
        repeat = repeat or 7
        if number is None:
            number = 1
            for i in range(10):
                number = 10 ** i
                if t.timeit(number) >= 0.2:
                    break
        runs = [x / number for x in t.repeat(repeat, number)]
        import statistics
        mean = statistics.fmean(runs)
        std = statistics.pstdev(runs) if len(runs) > 1 else 0.0
        if not quiet:
            print("%s \xb1 %s per loop (mean \xb1 std. dev. of %d run%s, %s loop%s each)" % (
                _fmt_time(mean), _fmt_time(std), repeat, "" if repeat == 1 else "s",
                "{:,}".format(number), "" if number == 1 else "s"))
        if return_result:
            return TimeitResult(runs, number, repeat)
        return None

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
        self._display("image/svg+xml", cell)

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
        try:
            self.shell.run_cell_body(cell)
        finally:
            sys.stdout, sys.stderr, d._publish = saved
        result = CapturedIO(out.getvalue(), err.getvalue(), outputs)
        if names:
            self.shell.user_ns[names[0]] = result

    # -- matplotlib and configuration -----------------------------------------------
    def line_matplotlib(self, line):
        gui = line.strip() or "inline"
        if gui not in ("inline", "agg", "notebook", "widget", "ipympl"):
            raise UsageError("cellbox shows figures inline only; `%%matplotlib %s` is not available" % gui)
        from cellbox import _inline
        _inline.enable(self.shell)

    def line_config(self, line):
        line = line.strip()
        if not line:
            print("Available objects for config:\n    InlineBackend")
            return
        m = re.match(r"^(\w+)\.(\w+)\s*=\s*(.+)$", line)
        if not m:
            raise UsageError("%%config Class.trait = value (got %r)" % line)
        cls, trait, value = m.groups()
        try:
            value = eval(value, self.shell.user_ns)
        except Exception as e:
            raise UsageError("%%config: cannot evaluate %r: %s" % (m.group(3), e))
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

    def line_xmode(self, line):
        print("Exception reporting mode: %s" % (line.strip().capitalize() or "Context"))

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
    def line_pinfo(self, line, detail=0):
        from cellbox._inspect import page_text
        text = page_text(self.shell, line.strip(), detail)
        if text is None:
            print("Object `%s` not found." % line.strip())
            return
        self.shell.payload.append({"source": "page", "data": {"text/plain": text}, "start": 0})

    def line_pinfo2(self, line):
        return self.line_pinfo(line, 1)

    def line_psearch(self, line):
        import fnmatch
        pat = line.strip()
        names = sorted(n for n in self.shell.user_ns if fnmatch.fnmatch(n, pat) and not n.startswith("_"))
        self.shell.payload.append({"source": "page", "data": {"text/plain": "\n".join(names)}, "start": 0})

    def line_who(self, line):
        names = self._user_names()
        print("\t".join(names) if names else "Interactive namespace is empty.")

    def line_who_ls(self, line):
        return self._user_names()

    def line_whos(self, line):
        names = self._user_names()
        if not names:
            print("Interactive namespace is empty.")
            return
        ns = self.shell.user_ns
        rows = [(n, type(ns[n]).__name__, repr(ns[n])[:60]) for n in names]
        w0 = max(8, max(len(r[0]) for r in rows))
        w1 = max(4, max(len(r[1]) for r in rows))
        print("%-*s   %-*s   Data/Info" % (w0, "Variable", w1, "Type"))
        print("-" * (w0 + w1 + 18))
        for r in rows:
            print("%-*s   %-*s   %s" % (w0, r[0], w1, r[1], r[2]))

    def _user_names(self):
        hidden = self.shell._hidden
        return sorted(n for n, v in self.shell.user_ns.items()
                      if not n.startswith("_") and n not in hidden and not isinstance(v, type(sys)))

    def line_reset(self, line):
        ns = self.shell.user_ns
        for n in [n for n in ns if n not in self.shell._hidden and not n.startswith("__")]:
            del ns[n]
        self.shell._out.clear()

    def line_lsmagic(self, line):
        l, c = self.names()
        print("Available line magics:\n" + "  ".join("%" + n for n in l))
        print("\nAvailable cell magics:\n" + "  ".join("%%" + n for n in c))

    def line_history(self, line):
        for i, src in enumerate(self.shell._in[1:], 1):
            if src:
                print(src if "-n" not in line else "%4d: %s" % (i, src))

    def line_precision(self, line):
        """%precision [N | %fmt]: how floats are shown (IPython's); the new
        format is the result."""
        from cellbox.display import get_formatter
        plain = get_formatter().formatters["text/plain"]
        plain.float_precision = line.strip()
        return plain.float_format


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
    def __init__(self, all_runs, loops, repeat):
        self.all_runs = all_runs
        self.loops = loops
        self.repeat = repeat
        self.best = min(all_runs)
        self.worst = max(all_runs)
        import statistics
        self.average = statistics.fmean(all_runs)
        self.stdev = statistics.pstdev(all_runs)

    def __repr__(self):
        return "<TimeitResult : %s \xb1 %s per loop (mean \xb1 std. dev. of %d runs, %d loops each)>" % (
            _fmt_time(self.average), _fmt_time(self.stdev), self.repeat, self.loops)
