"""What the browser tests (tests/browser_*.py) share: where Debian's
chromium and node are, where npm's global modules are (playwright-core,
@xterm/xterm), what is missing, and running a node driver script that
prints one JSON line of results."""
import json
import os
import shutil
import subprocess

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NODE = shutil.which("node")


def node_roots():
    """Folders that may hold global node modules, npm's own first."""
    roots = []
    npm = shutil.which("npm")
    if npm:
        try:
            roots.append(subprocess.run([npm, "root", "-g"], capture_output=True, text=True, timeout=30).stdout.strip())
        except Exception:
            pass
    roots += ["/usr/lib/node_modules", "/usr/local/lib/node_modules", "/usr/share/nodejs"]
    return [r for r in dict.fromkeys(roots) if r and os.path.isdir(r)]


def module_dir(name):
    """The folder of node module `name` (e.g. "@xterm/xterm"), or None."""
    for r in node_roots():
        if os.path.isdir(os.path.join(r, name)):
            return os.path.join(r, name)
    return None


def missing(*modules, programs=()):
    """What of chromium, node, the node modules and programs is missing."""
    out = [what for what, ok in (("chromium", os.path.exists(CHROMIUM)), ("node", NODE)) if not ok]
    out += [m for m in modules if not module_dir(m)]
    out += [p for p in programs if not shutil.which(p)]
    return out


def run_driver(script, *args, timeout=300):
    """Run a node driver with the browser; its last stdout line is a JSON
    object of results (or one with "error" saying what went wrong)."""
    env = dict(os.environ, NODE_PATH=os.pathsep.join(node_roots()))
    p = subprocess.run([NODE, script] + list(args) + [CHROMIUM], capture_output=True, text=True,
                       timeout=timeout, env=env)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except Exception:
        return {"checks": {}, "error": "no result: %s\n%s" % (p.stdout[-1500:], p.stderr[-1500:])}
