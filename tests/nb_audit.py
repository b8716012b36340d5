#!/usr/bin/python3
"""`cellbox run` audited as a demanding nbclient/papermill user would: what
happens to the files it replaces (a symbolic link given to --inplace, the
mode and group of a replaced notebook, the umask for a new one), inputs that
are each other's outputs, SIGHUP (a closed terminal or SSH session), and a
kernelspec that is not JSON.

Nothing here depends on timing: waits are for events (files a cell writes),
with generous timeouts that only matter when something is broken. Every
kernel a test provokes is checked to be gone afterwards. Run as root, the
group of a replaced file is checked too (chown to another group)."""
import base64
import grp
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

KS = {"name": "cellbox", "display_name": "Python 3 (cellbox)", "language": "python"}


def write_nb(path, cells, kernelspec=KS):
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": kernelspec},
          "cells": [{"cell_type": "code", "id": "c%d" % (i + 1), "metadata": {}, "source": src, "outputs": [],
                     "execution_count": None} for i, src in enumerate(cells)]}
    with open(path, "w") as fh:
        json.dump(nb, fh)
    return path


def text(nb, i):
    return "".join("".join(o.get("text", "")) for o in nb["cells"][i]["outputs"] if o["output_type"] == "stream")


def enames(nb, i):
    return [o["ename"] for o in nb["cells"][i]["outputs"] if o["output_type"] == "error"]


def children(pid):
    """The pids of pid's children (from /proc/PID/task/*/children)."""
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as fh:
                kids += [int(x) for x in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def signal_settled(pid, sig, timeout=30):
    """Waits until sig is pending neither for the process nor a thread."""
    bit = 1 << (sig - 1)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pending = 0
        try:
            with open("/proc/%d/status" % pid) as fh:
                for line in fh:
                    if line.startswith(("SigPnd:", "ShdPnd:")):
                        pending |= int(line.split()[1], 16)
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/status" % (pid, tid)) as fh:
                    for line in fh:
                        if line.startswith("SigPnd:"):
                            pending |= int(line.split()[1], 16)
        except (FileNotFoundError, ProcessLookupError):
            return
        if not pending & bit:
            return
        time.sleep(0.01)


def finish(proc, errf, timeout=60):
    """Waits for proc (killed after timeout seconds) and returns what it
    wrote to the file errf, which is closed."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    errf.seek(0)
    text = errf.read()
    errf.close()
    return text


def main():
    t = C.Tap()
    tmp = C.tempdir("cellbox-nb-audit-")
    leftover = []
    try:
        env = C.kernelspec_env(tmp)
        d = os.path.join(tmp, "w")
        os.makedirs(d)

        def run(*args, **kw):
            return C.run(args, env=env, **kw)

        # ------------------------------------------ what a replaced file keeps
        real = os.path.join(d, "real")
        os.makedirs(real)
        target = write_nb(os.path.join(real, "target.ipynb"), ["print('through')"])
        link = os.path.join(d, "link.ipynb")
        os.symlink(os.path.join("real", "target.ipynb"), link)
        r = run("run", "--inplace", link)
        res = C.load(target)
        t.ok(r.returncode == 0 and os.path.islink(link) and os.readlink(link) == os.path.join("real", "target.ipynb")
             and text(res, 0) == "through\n" and os.listdir(real) == ["target.ipynb"],
             "--inplace on a symbolic link writes the file it names; the link stays (was replaced by a file)",
             r.stderr)

        r = run("run", "--inplace", link, "-p", "x", "1")
        res = C.load(target)
        t.ok(r.returncode == 0 and os.path.islink(link) and res["metadata"]["papermill"]["output_path"] == link
             and res["metadata"]["papermill"]["input_path"] == link,
             "papermill's output_path is the path given (the link), as its input_path", r.stderr)

        shared = write_nb(os.path.join(d, "shared.ipynb"), ["print('shared')"])
        os.chmod(shared, 0o640)
        group = owner = None
        if os.geteuid() == 0:
            # root runs a user's notebook: it must stay the user's
            others = [g for g in grp.getgrall() if g.gr_gid != os.getegid()]
            if others:
                group = others[0].gr_gid
            owner = 65534
            os.chown(shared, owner, -1 if group is None else group)
        r = run("run", "--inplace", shared)
        st = os.stat(shared)
        t.ok(r.returncode == 0 and stat.S_IMODE(st.st_mode) == 0o640 and (group is None or st.st_gid == group)
             and (owner is None or st.st_uid == owner) and text(C.load(shared), 0) == "shared\n",
             "--inplace keeps the notebook's mode 0640%s (was 0644, ours)" % (" owner and group" if owner else ""),
             "mode %o uid %d gid %d (want %s %s) %s" % (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, owner, group,
                                                       r.stderr))

        # -o onto an existing file keeps its mode too, as nbformat.write()
        old_out = os.path.join(d, "old_out.ipynb")
        with open(old_out, "w") as fh:
            fh.write("{}")
        os.chmod(old_out, 0o600)
        r = run("run", shared, "-o", old_out)
        t.ok(r.returncode == 0 and stat.S_IMODE(os.stat(old_out).st_mode) == 0o600
             and text(C.load(old_out), 0) == "shared\n",
             "-o onto an existing 0600 file keeps 0600 (was 0644)", "%o %s" % (os.stat(old_out).st_mode, r.stderr))

        # a new file follows the umask, as open() in nbformat.write()
        private = write_nb(os.path.join(d, "private.ipynb"), ["print('private')"])
        r = subprocess.run([C.CELLBOX, "run", private], env=env, capture_output=True, text=True, timeout=300,
                           preexec_fn=lambda: os.umask(0o077))
        out = private.replace(".ipynb", ".out.ipynb")
        mode = stat.S_IMODE(os.stat(out).st_mode) if os.path.exists(out) else None
        t.ok(r.returncode == 0 and mode == 0o600, "a new output under umask 077 is 0600 (was 0644: readable by all)",
             "mode %s %s" % (oct(mode) if mode is not None else None, r.stderr))

        # ------------------------- extended attributes, ACLs and hard links
        tagged = write_nb(os.path.join(d, "tagged.ipynb"), ["print('tagged')"])
        # a POSIX ACL (user 65534 may read and write) in the kernel's xattr form, and a user tag
        acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, uid) for tag, perm, uid in
                                              ((1, 6, 0xffffffff), (2, 6, 65534), (4, 4, 0xffffffff),
                                               (0x10, 6, 0xffffffff), (0x20, 4, 0xffffffff)))
        try:
            os.setxattr(tagged, "user.project", b"q3-report")
            os.setxattr(tagged, "system.posix_acl_access", acl)
            have_xattr = True
        except OSError as e:
            have_xattr = str(e)
        if have_xattr is True:
            r = run("run", "--inplace", tagged)
            got = {n: os.getxattr(tagged, n) for n in os.listxattr(tagged)}
            t.ok(r.returncode == 0 and text(C.load(tagged), 0) == "tagged\n"
                 and got.get("user.project") == b"q3-report" and got.get("system.posix_acl_access") == acl,
                 "--inplace keeps the notebook's extended attributes and its ACL (both were lost)",
                 "%r %s" % (got, r.stderr))
        else:
            t.skip("extended attributes: this file system refuses them (%s)" % have_xattr)

        linked = write_nb(os.path.join(d, "linked.ipynb"), ["print('linked')"])
        other = os.path.join(d, "other-name.ipynb")
        os.link(linked, other)
        before = C.read_text(other)
        r = run("run", "--inplace", linked)
        t.ok(r.returncode == 0 and text(C.load(linked), 0) == "linked\n" and C.read_text(other) == before
             and "linked.ipynb has 2 hard links" in r.stderr and "other links keep the old contents" in r.stderr,
             "--inplace on a hard-linked notebook says that the other link keeps the old contents (was silent)",
             r.stderr)

        # ----------------------------------- an output that is another input
        first = write_nb(os.path.join(d, "first.ipynb"), ["print('first')"])
        second = write_nb(os.path.join(d, "first.out.ipynb"), ["print('precious')"])
        before = C.read_text(second)
        r = run("run", first, second)
        t.ok(r.returncode == 2 and "first.out.ipynb, which is also an input" in r.stderr
             and C.read_text(second) == before and not os.path.exists(os.path.join(d, "first.out.out.ipynb")),
             "a.ipynb and a.out.ipynb as inputs: exit 2 before running (a.out.ipynb was overwritten by a's result)",
             r.stderr)
        r = run("run", "-j", "2", second, first)
        t.ok(r.returncode == 2 and C.read_text(second) == before, "the same in the other order, with -j 2", r.stderr)

        # ------------------------------------------------------------- SIGHUP
        # mid-cell: like SIGINT/SIGTERM, the cell is stopped, the partial
        # notebook written and the kernel shut down
        hup = write_nb(os.path.join(d, "hup.ipynb"), [
            "import os\nprint('before')\nopen('hup.pid', 'w').write(str(os.getpid()))",
            "import time\nopen('hup.ready', 'w').close()\ntime.sleep(120)", "print('never')"])
        # stderr to a file: a kernel left running would hold a pipe open
        errf = open(os.path.join(tmp, "hup.err"), "w+")
        # (SIGHUP's default action, as in a terminal session: the test may
        # itself run under nohup, whose ignored SIGHUP cellbox run keeps)
        proc = subprocess.Popen([C.CELLBOX, "run", hup], env=env, stdout=subprocess.DEVNULL, stderr=errf,
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        ready = C.wait_for_file(os.path.join(d, "hup.ready"))
        kpid = int(C.read_text(os.path.join(d, "hup.pid"))) if ready else 0
        leftover.append(kpid)
        if ready:
            proc.send_signal(signal.SIGHUP)
        stderr = finish(proc, errf)
        out = hup.replace(".ipynb", ".out.ipynb")
        res = C.load(out) if os.path.exists(out) else None
        t.ok(ready and proc.returncode == 130 and "interrupted" in stderr and res and text(res, 0) == "before\n"
             and enames(res, 1) == ["KeyboardInterrupt"] and not C.pid_alive(kpid),
             "SIGHUP mid-cell: exit 130, partial notebook written, kernel gone (was: killed at once, nothing written)",
             "rc %s %s" % (proc.returncode, stderr))

        # during startup, with a kernel that does not watch its parent: it
        # must not be left running
        kd = os.path.join(tmp, "prefix", "share", "jupyter", "kernels", "deaf")
        os.makedirs(kd)
        with open(os.path.join(kd, "kernel.json"), "w") as fh:
            json.dump({"argv": ["/bin/sh", "-c", "echo $$ > deaf.pid; exec sleep 600", "{connection_file}"],
                       "display_name": "deaf", "language": "python"}, fh)
        simple = write_nb(os.path.join(d, "simple.ipynb"), ["print(1)"])
        # stderr to a file: a kernel left running would hold a pipe open
        errf = open(os.path.join(tmp, "deaf.err"), "w+")
        proc = subprocess.Popen([C.CELLBOX, "run", "-k", "deaf", "--startup-timeout", "300", simple], env=env,
                                cwd=d, stdout=subprocess.DEVNULL, stderr=errf,
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
        ready = C.wait_for_file(os.path.join(d, "deaf.pid"))
        spid = 0
        end = time.monotonic() + 30
        while ready and not spid and time.monotonic() < end:
            txt = C.read_text(os.path.join(d, "deaf.pid")).strip()
            spid = int(txt) if txt else 0
            time.sleep(0.05)
        leftover.append(spid)
        if spid:
            proc.send_signal(signal.SIGHUP)
        stderr = finish(proc, errf)
        t.ok(spid and proc.returncode == 130 and "cancelled while the kernel was starting" in stderr and not C.pid_alive(spid),
             "SIGHUP while a kernel starts: exit 130, the kernel process killed (was: left running, orphaned)",
             "rc %s %s" % (proc.returncode, stderr))

        # ------------------------------------------ SIGKILL of cellbox run
        # nothing of cellbox runs then: a kernel that does not watch its
        # parent must still not be left running. The kernel here is a wrapper
        # that ignores SIGTERM and SIGHUP and runs ipykernel as its child,
        # without JPY_PARENT_PID (so ipykernel does not watch its parent
        # either), with -j 2 (kernels started from worker threads)
        kd = os.path.join(tmp, "prefix", "share", "jupyter", "kernels", "wrapped")
        os.makedirs(kd)
        wrapper = os.path.join(kd, "wrapper.py")
        with open(wrapper, "w") as fh:
            fh.write("import os, signal, subprocess, sys\n"
                     "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                     "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
                     "env = {k: v for k, v in os.environ.items() if k != 'JPY_PARENT_PID'}\n"
                     "kid = subprocess.Popen([sys.executable, '-m', 'ipykernel_launcher', '-f', sys.argv[1]], env=env)\n"
                     "while True:\n"
                     "    try:\n"
                     "        sys.exit(kid.wait())\n"
                     "    except InterruptedError:\n"
                     "        pass\n")
        with open(os.path.join(kd, "kernel.json"), "w") as fh:
            json.dump({"argv": ["/usr/bin/python3", wrapper, "{connection_file}"], "display_name": "wrapped",
                       "language": "python"}, fh)
        killed = []
        for i in range(2):
            killed.append(write_nb(os.path.join(d, "killed%d.ipynb" % i), [
                "import os, time\nopen('killed%d.pids', 'w').write('%%d %%d' %% (os.getppid(), os.getpid()))\n"
                "time.sleep(300)" % i]))
        errf = open(os.path.join(tmp, "killed.err"), "w+")
        proc = subprocess.Popen([C.CELLBOX, "run", "-j", "2", "-k", "wrapped"] + killed, env=env, cwd=d,
                                stdout=subprocess.DEVNULL, stderr=errf)
        pids = []
        for i in range(2):
            f = os.path.join(d, "killed%d.pids" % i)
            if C.wait_for_file(f, timeout=120):
                end = time.monotonic() + 30
                while not C.read_text(f).strip() and time.monotonic() < end:
                    time.sleep(0.05)
                pids += [int(x) for x in C.read_text(f).split()]
        leftover += pids
        if len(pids) == 4:
            proc.kill()
        finish(proc, errf)
        end = time.monotonic() + 15  # an event awaited: they go at once when cellbox's death is noticed
        while any(C.pid_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.05)
        alive = [p for p in pids if C.pid_alive(p)]
        t.ok(len(pids) == 4 and proc.returncode == -signal.SIGKILL and not alive,
             "SIGKILL of cellbox run -j 2 mid-cell: the kernels (a wrapper deaf to SIGTERM/SIGHUP and its "
             "ipykernel) are gone (were left running forever)",
             "pids %s alive %s rc %s" % (pids, alive, proc.returncode))

        # a signal ignored when cellbox run starts stays ignored: `nohup
        # cellbox run` survives the hang-up, and a background job of a
        # non-interactive shell (SIGINT ignored) is not stopped by Ctrl-C
        for sig in (signal.SIGHUP, signal.SIGINT):
            name = signal.Signals(sig).name
            go = os.path.join(d, "go-" + name)
            started = os.path.join(d, "started-" + name)
            nh = write_nb(os.path.join(d, "nohup-%s.ipynb" % name), [
                "import os, time\nopen(%r, 'w').close()\nwhile not os.path.exists(%r):\n    time.sleep(0.05)\n"
                "print('finished')" % (started, go)])
            errf = open(os.path.join(tmp, "nohup.err"), "w+")
            proc = subprocess.Popen([C.CELLBOX, "run", nh], env=env, stdout=subprocess.DEVNULL, stderr=errf,
                                    preexec_fn=lambda s=sig: signal.signal(s, signal.SIG_IGN))
            ready = C.wait_for_file(started)
            if ready:
                proc.send_signal(sig)
                # once it is no longer pending it was ignored or handled (and a
                # run that handled it ends with 130 whatever the cell does)
                signal_settled(proc.pid, sig)
                open(go, "w").close()
            err = finish(proc, errf, timeout=120)
            out = nh.replace(".ipynb", ".out.ipynb")
            res = C.load(out) if os.path.exists(out) else None
            t.ok(ready and proc.returncode == 0 and res and text(res, 0) == "finished\n",
                 "%s ignored at start (nohup, a background job): the run goes on to the end" % name,
                 "rc %s %s" % (proc.returncode, err))

        # ------------------------------------------- parameter names (papermill)
        # a name the kernel's language cannot assign to fails before any
        # cell runs (papermill: the cells above the parameters cell ran, then
        # the injected cell failed, or a name such as 'x; code' ran as code)
        marker = os.path.join(d, "ran.marker")
        pnb = os.path.join(d, "pnames.ipynb")
        nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": KS}, "cells": [
            {"cell_type": "code", "id": "first", "metadata": {}, "outputs": [], "execution_count": None,
             "source": "open(%r, 'w').close()" % marker},
            {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "outputs": [],
             "execution_count": None, "source": "a = 1"},
            {"cell_type": "code", "id": "use", "metadata": {}, "outputs": [], "execution_count": None,
             "source": "print(repr(a))"}]}
        with open(pnb, "w") as fh:
            json.dump(nb, fh)
        for name in ("a-b", "1a", "", "class", "x; open('pwned', 'w')", "a\nb"):
            r = run("run", pnb, "-p", name.replace("\\n", "\n"), "5")
            t.ok(r.returncode == 1 and "parameter %s is not a valid variable name in Python: nothing was run"
                 % json.dumps(name.replace("\\n", "\n")) in r.stderr and not os.path.exists(marker)
                 and not os.path.exists(os.path.join(d, "pwned")),
                 "-p %r: refused before any cell runs (ran the cells above, then failed or ran it)" % name, r.stderr)
        # which value wins: papermill's kinds in its order (-b < -f < -y < -p
        # < -r), whatever their order on the command line
        # (JSON, which is YAML: no libyaml needed)
        with open(os.path.join(d, "a2.json"), "w") as fh:
            fh.write('{"a": 2}\n')
        b64 = base64.b64encode(b'{"a": 4}').decode()
        for args, want in ((["-p", "a", "1", "-f", "a2.json"], 1), (["-y", '{"a": 3}', "-f", "a2.json"], 3),
                           (["-r", "a", "raw", "-p", "a", "1"], "raw"), (["-f", "a2.json", "-b", b64], 2),
                           (["-p", "a", "1", "-y", '{"a": 3}'], 1), (["-p", "a", "1", "-p", "a", "5"], 5)):
            os.remove(marker) if os.path.exists(marker) else None
            r = run("run", pnb, "-o", os.path.join(d, "pw.ipynb"), *[os.path.join(d, x) if x == "a2.json" else x
                                                                      for x in args])
            res = C.load(os.path.join(d, "pw.ipynb")) if r.returncode == 0 else None
            t.ok(res and text(res, 3) == repr(want) + "\n" and res["metadata"]["papermill"]["parameters"] == {"a": want},
                 "%s: a = %r, as papermill" % (" ".join(args), want), r.stderr + (text(res, 3) if res else ""))
        os.remove(marker) if os.path.exists(marker) else None

        with open(os.path.join(d, "p.json"), "w") as fh:
            fh.write('{"a = 2 #": 3}\n')
        r = run("run", pnb, "-f", os.path.join(d, "p.json"))
        t.ok(r.returncode == 1 and "is not a valid variable name in Python" in r.stderr and not os.path.exists(marker),
             "a parameters file key that is code: refused before any cell runs", r.stderr)
        r = run("run", pnb, "-p", "\u00e9t\u00e9", "5", "-p", "_x", "6", "-p", "match", "7")
        t.ok(r.returncode == 0 and os.path.exists(marker), "non-ASCII, '_x' and soft keywords are names", r.stderr)
        r = run("run", pnb, "--prepare-only", "-l", "R", "-o", os.path.join(d, "r.ipynb"), "-p", "a.b", "1",
                "-p", "_x", "2")
        t.ok(r.returncode == 0 and "a.b = 1\nx = 2\n" in "".join(C.load(os.path.join(d, "r.ipynb"))["cells"][2]["source"]),
             "R names: 'a.b' kept, papermill's leading '_' dropped", r.stderr)
        os.remove(marker) if os.path.exists(marker) else None
        r = run("run", pnb, "--prepare-only", "-k", "no-such-r-kernel", "-l", "R", "-o", os.path.join(d, "r3.ipynb"),
                "-p", "x", "1")
        t.ok(r.returncode == 0 and "x = 1\n" in "".join(C.load(os.path.join(d, "r3.ipynb"))["cells"][2]["source"])
             and not os.path.exists(marker),
             "--prepare-only -k NAME needs no kernel NAME installed, as papermill (was: no kernelspec named)", r.stderr)
        r = run("run", pnb, "--prepare-only", "-l", "R", "-o", os.path.join(d, "r2.ipynb"), "-p", "a-b", "1")
        t.ok(r.returncode == 1 and "not a valid variable name in R" in r.stderr, "R: 'a-b' refused", r.stderr)

        # ------------------------------------------------- messages that say
        fails = write_nb(os.path.join(d, "fails.ipynb"), ["1/0"])
        r = run("run", fails, "-o", "-")
        t.ok(r.returncode == 1 and r.stderr.endswith("ZeroDivisionError: division by zero; partial notebook written "
                                                     "to stdout\n") and json.loads(r.stdout)["cells"],
             "a failed notebook written to stdout says 'written to stdout' (said 'written to -')", r.stderr)

        # ---------------------------- output paths refused before any cell runs
        mk = write_nb(os.path.join(d, "mk.ipynb"), ["open('out.marker', 'w').close()"])
        omarker = os.path.join(d, "out.marker")
        for args, why in ((["-o", ""], "-o/--output needs a path, not ''"),
                          (["--output-dir", ""], "--output-dir needs a path, not ''"),
                          (["-o", os.path.join(d, "nodir") + "/"], "a path ending in '/' names a folder"),
                          (["-o", "{x}", "-p", "x", ""], "{x} is an empty path with these parameters"),
                          (["--output-dir", "{x}", "-p", "x", ""], "{x} is an empty path with these parameters")):
            r = run("run", mk, *args)
            t.ok(r.returncode == 2 and why in r.stderr and not os.path.exists(omarker),
                 "%s: exit 2 before running (exit 1, most after running the notebook)" % " ".join(map(repr, args)),
                 r.stderr)

        # ------------------------------------------------------ NaN seconds
        for opt in ("--timeout", "--startup-timeout", "--interrupt-timeout", "--heartbeat-timeout",
                    "--autosave-cell-every"):
            r = run("run", opt, "nan", simple, "-o", os.path.join(d, "nan.ipynb"))
            t.ok(r.returncode == 2 and "needs a number of seconds >= 0, not 'nan'" in r.stderr
                 and not os.path.exists(os.path.join(d, "nan.ipynb")),
                 "%s nan: bad usage (was taken: a timeout that never expires)" % opt, r.stderr)

        # --------------------------------- kernel names are case-insensitive
        # (jupyter_client lowercases folder names and the name asked for)
        kd = os.path.join(tmp, "prefix", "share", "jupyter", "kernels", "AuditKern")
        os.makedirs(kd)
        with open(os.path.join(kd, "kernel.json"), "w") as fh:
            json.dump({"argv": [os.path.abspath(C.CELLBOX), "kernel", "-f", "{connection_file}"],
                       "display_name": "audit", "language": "python", "env": {"AUDIT_KERN": "yes"}}, fh)
        which = write_nb(os.path.join(d, "which.ipynb"), ["import os\nprint(os.environ.get('AUDIT_KERN'))"])
        r = run("run", "-k", "auditkern", which, "-o", os.path.join(d, "which1.ipynb"))
        res = C.load(os.path.join(d, "which1.ipynb")) if r.returncode == 0 else None
        t.ok(res and text(res, 0) == "yes\n", "-k auditkern finds the kernelspec folder AuditKern (was: no kernelspec)",
             r.stderr)
        which2 = write_nb(os.path.join(d, "which2.ipynb"), ["import os\nprint(os.environ.get('AUDIT_KERN'))"],
                          kernelspec={"name": "AUDITKERN", "display_name": "audit", "language": "python"})
        r = run("run", which2)
        res = C.load(os.path.join(d, "which2.out.ipynb")) if r.returncode == 0 else None
        t.ok(res and text(res, 0) == "yes\n",
             "a notebook's kernelspec 'AUDITKERN' runs on AuditKern (ran silently on cellbox's own kernel)", r.stderr)

        # a TMPDIR that does not exist: the message names it
        r = C.run(["run", simple, "-o", os.path.join(d, "tmpdir.ipynb")], env=dict(env, TMPDIR=os.path.join(d, "gone")))
        t.ok(r.returncode == 1 and "connection file in %s ($TMPDIR): No such file" % os.path.join(d, "gone") in r.stderr,
             "a missing $TMPDIR is named in the reason", r.stderr)

        # ------------------------------------------------ a broken kernelspec
        kd = os.path.join(tmp, "prefix", "share", "jupyter", "kernels", "broken")
        os.makedirs(kd)
        with open(os.path.join(kd, "kernel.json"), "w") as fh:
            fh.write('{"argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],\n')
        r = run("run", "-k", "broken", simple)
        t.ok(r.returncode == 1 and "kernel.json: not valid JSON" in r.stderr,
             "a kernel.json that is not JSON says so (said: it needs an 'argv' list)", r.stderr)

        # ----------------------- an interrupt while cellbox's kernel still starts
        # --timeout 0.001: the interrupt comes while the kernel starts its
        # Python (it answers kernel_info before): it killed the kernel ("Failed
        # to import the site module", or SIGINT's default action). A
        # sitecustomize that sleeps makes that start last 1 s, so the
        # interrupt lands in it however loaded the machine is.
        slow = write_nb(os.path.join(d, "slow.ipynb"), ["import time\ntime.sleep(30)", "print('not run')"])
        site = os.path.join(tmp, "slowsite")
        os.makedirs(site)
        with open(os.path.join(site, "sitecustomize.py"), "w") as fh:
            fh.write("import time\ntime.sleep(1)\n")
        bad = []
        for i in range(5):
            out = os.path.join(d, "slow%d.ipynb" % i)
            r = C.run(["run", "-k", "cellbox", slow, "-o", out, "--timeout", "0.001"], env=dict(env, PYTHONPATH=site))
            res = C.load(out) if os.path.exists(out) else None
            if not (r.returncode == 1 and "timed out" in r.stderr and "died" not in r.stderr and res
                    and enames(res, 0) == ["KeyboardInterrupt", "CellTimeoutError"]):
                bad.append((r.returncode, r.stderr[-300:], res and res["cells"][0]["outputs"]))
        t.ok(not bad, "an interrupt while cellbox's kernel starts Python: the cell gets KeyboardInterrupt and "
             "CellTimeoutError as under ipykernel (5 runs; the kernel died)", bad)
    finally:
        for pid in leftover:
            C.kill_if_alive(pid)
        shutil.rmtree(tmp, ignore_errors=True)
    return t.done()


if __name__ == "__main__":
    sys.exit(main())
