"""Bootstrap of cellbox's Python side (run first, from the binary).

Serves the embedded ``cellbox`` package to the import system, and offers
``when_imported(name, fn)``: run fn(module) right after a module is first
imported, so the kernel can adapt IPython, getpass, matplotlib... only in
processes that actually import them (nothing heavy is imported up front);
and ``before_import(name, fn)``: run fn() just before a module's own code
runs, to set up what the module looks for at import time.
"""
import sys

import _cellbox_c
from importlib.machinery import ModuleSpec

__all__ = ["when_imported", "before_import"]


class _EmbeddedLoader:
    def __init__(self, name, is_pkg, code, filename):
        self.name = name
        self._is_pkg = is_pkg
        self._code = code
        self.path = filename

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__file__ = self.path
        exec(self._code, module.__dict__)

    def get_source(self, name):
        return _cellbox_c.embedded_source(name)

    def is_package(self, name):
        return self._is_pkg

    def get_filename(self, name):
        return self.path


class EmbeddedFinder:
    """Finds cellbox.* in the binary."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "cellbox" and not name.startswith("cellbox."):
            return None
        found = _cellbox_c.embedded_module(name)
        if found is None:
            return None
        is_pkg, code, filename = found
        spec = ModuleSpec(name, _EmbeddedLoader(name, is_pkg, code, filename),
                          origin=filename, is_package=is_pkg)
        if is_pkg:
            spec.submodule_search_locations = []
        return spec

    @staticmethod
    def invalidate_caches():
        pass


_hooks = {}     # name -> [fn(module)], run after the module's code
_before = {}    # name -> [fn()], run before it


class _HookedLoader:
    """Wraps a module's real loader; runs the hooks after exec_module."""

    def __init__(self, loader, name):
        self.__dict__["_loader"] = loader
        self.__dict__["_name"] = name

    def __getattr__(self, attr):
        return getattr(self._loader, attr)

    def __setattr__(self, attr, value):
        setattr(self._loader, attr, value)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create else None

    def exec_module(self, module):
        # the module must look as if the real loader had loaded it
        module.__loader__ = self._loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        for fn in _hooks.pop(self._name, ()):
            _run_hook(self._name, fn, module)


def _run_hook(name, fn, *args):
    try:
        fn(*args)
    except Exception as e:  # a hook must never break the user's import
        sys.__stderr__.write("cellbox: import hook for %s failed: %r\n" % (name, e))


class PostImportFinder:
    _busy = set()

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if (name not in _hooks and name not in _before) or name in cls._busy:
            return None
        cls._busy.add(name)
        try:
            for finder in sys.meta_path:
                if finder is cls:
                    continue
                find = getattr(finder, "find_spec", None)
                spec = find(name, path, target) if find else None
                if spec is not None:
                    break
            else:
                return None
        finally:
            cls._busy.discard(name)
        # before-hooks run now, the module's code next (its loader is left
        # alone when nothing runs after: no extra frame, so a warning it
        # gives with stacklevel=2 names the importing line, as usual)
        for fn in _before.pop(name, ()):
            _run_hook(name, fn)
        if name in _hooks and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader, name)
        return spec

    @staticmethod
    def invalidate_caches():
        pass


class _LazyPackage(type(sys)):
    """A package whose __init__ runs only when one of its own names is used.

    `from IPython.display import HTML` needs IPython/display.py, not the
    0.2 s of IPython/__init__ (terminal, prompt_toolkit...): submodules
    import as usual, and the first access to a missing attribute
    (IPython.get_ipython, IPython.__version__, `from IPython import *`) runs
    the real __init__ in place, so nothing behaves differently."""

    def __getattr__(self, name):
        d = type(sys).__getattribute__(self, "__dict__")
        if not d.get("_cellbox_lazy"):
            raise AttributeError(name)
        # a submodule (`from IPython import display`) does not need __init__
        if not name.startswith("_"):
            import importlib.util
            try:
                found = importlib.util.find_spec(d["__name__"] + "." + name)
            except (ImportError, ValueError):
                found = None
            if found is not None:
                return importlib.import_module(d["__name__"] + "." + name)
        self._cellbox_load()
        return type(sys).__getattribute__(self, name)

    def __dir__(self):
        self._cellbox_load()
        return sorted(type(sys).__getattribute__(self, "__dict__"))

    def _cellbox_load(self):
        d = type(sys).__getattribute__(self, "__dict__")
        if not d.pop("_cellbox_lazy", False):
            return
        code = d["__spec__"].loader.get_code(d["__name__"])
        exec(code, d)


class _LazyLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.__class__ = _LazyPackage
        module.__loader__ = self.loader
        module.__spec__.loader = self.loader
        module._cellbox_lazy = True


class _InitFirstLoader:
    """Loads a submodule of a still-lazy package the usual way round: the
    package's real __init__ first (which may import this very module, as
    IPython's imports IPython.core.magic), then the module. The placeholder
    module the import system made is dropped for the real one (a module may
    replace itself in sys.modules; the import returns what is there)."""

    def __init__(self, pkg, name):
        self.pkg = pkg
        self.name = name

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if sys.modules.get(self.name) is module:
            del sys.modules[self.name]
        self.pkg._cellbox_load()
        real = sys.modules.get(self.name)
        if real is None:
            import importlib
            real = importlib.import_module(self.name)
        sys.modules[self.name] = real


class LazyPackageFinder:
    """Serves the packages in LAZY as _LazyPackage modules.

    Only the submodules in SAFE (what ``from IPython.display import ...``
    needs) are imported without the package's __init__; importing any other
    submodule first runs the real __init__, as without cellbox: IPython's
    modules import each other in an order that assumes it has run."""

    LAZY = ("IPython",)
    SAFE = frozenset((
        "IPython.core", "IPython.core.display", "IPython.core.display_functions",
        "IPython.core.getipython", "IPython.core.error", "IPython.display", "IPython.lib",
        "IPython.lib.display", "IPython.lib.pretty", "IPython.testing", "IPython.testing.skipdoctest",
        "IPython.utils", "IPython.utils.decorators", "IPython.utils.encoding", "IPython.utils.py3compat",
    ))
    _busy = False

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in cls.LAZY or cls._busy:
            return None
        if top != name:
            pkg = sys.modules.get(top)
            if (name in cls.SAFE or pkg is None
                    or not type(sys).__getattribute__(pkg, "__dict__").get("_cellbox_lazy")):
                return None
            import importlib.machinery
            if importlib.machinery.PathFinder.find_spec(name, path) is None:
                return None   # no such submodule: an attribute of the package, or an ImportError
            return importlib.machinery.ModuleSpec(name, _InitFirstLoader(pkg, name))
        cls._busy = True
        try:
            import importlib.util
            spec = importlib.util.find_spec(name)
        finally:
            cls._busy = False
        if spec is None or spec.submodule_search_locations is None or not hasattr(spec.loader, "get_code"):
            return spec
        spec.loader = _LazyLoader(spec.loader)
        return spec

    @staticmethod
    def invalidate_caches():
        pass


def when_imported(name, fn):
    """Call fn(module) once the module `name` is imported (now if it is)."""
    mod = sys.modules.get(name)
    if mod is not None:
        fn(mod)
    else:
        _hooks.setdefault(name, []).append(fn)


def before_import(name, fn):
    """Call fn() just before the module `name` runs its code, the first time
    it is imported (never if it already is)."""
    if name not in sys.modules:
        _before.setdefault(name, []).append(fn)


sys.meta_path.insert(0, EmbeddedFinder)
sys.meta_path.insert(0, LazyPackageFinder)
sys.meta_path.insert(0, PostImportFinder)
