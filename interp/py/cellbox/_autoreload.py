"""%load_ext autoreload / %autoreload N: reload changed modules before each cell."""
import importlib
import os
import sys

_instance = None


class AutoReloader:
    def __init__(self, shell):
        self.shell = shell
        self.mode = 1
        self.mtimes = {}
        self._snapshot()
        shell.pre_execute = getattr(shell, "pre_execute", [])
        shell.pre_execute.append(self.check)

    def set_mode(self, mode):
        self.mode = int(mode) if mode.isdigit() else 1

    def _files(self):
        for name, mod in list(sys.modules.items()):
            f = getattr(mod, "__file__", None)
            if f and f.endswith(".py") and not f.startswith(sys.prefix) and not name.startswith("cellbox"):
                yield name, mod, f

    def _snapshot(self):
        for name, mod, f in self._files():
            try:
                self.mtimes[name] = os.stat(f).st_mtime
            except OSError:
                pass

    def check(self):
        if self.mode == 0:
            return
        for name, mod, f in self._files():
            try:
                mt = os.stat(f).st_mtime
            except OSError:
                continue
            old = self.mtimes.get(name)
            self.mtimes[name] = mt
            if old is not None and mt != old:
                try:
                    importlib.reload(mod)
                except Exception as e:
                    sys.stderr.write("[autoreload of %s failed: %s]\n" % (name, e))


def install(shell):
    global _instance
    if _instance is None:
        _instance = AutoReloader(shell)
    return _instance
