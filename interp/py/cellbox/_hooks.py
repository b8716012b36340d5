"""Import hooks of cellbox's rich-output side, installed at kernel start.

Each hook imports its cellbox module only when the user imports the
library it adapts, so the kernel starts without any of them.
"""
from _cellbox_boot import before_import, when_imported

# (module the user imports, cellbox module, function called with that module)
_HOOKS = (
    ("IPython.core.display_functions", "cellbox._ipython", "patch_display_functions"),
    ("IPython.core.getipython", "cellbox._ipython", "patch_getipython"),
    ("IPython.core.display", "cellbox._ipython", "patch_core_display"),
    ("IPython.core.magic", "cellbox._ipython", "patch_magic"),
    ("IPython.core.interactiveshell", "cellbox._ipython", "patch_interactiveshell"),
    ("matplotlib_inline.backend_inline", "cellbox._ipython", "patch_matplotlib_inline"),
    ("comm", "cellbox._comm", "patch_comm_package"),
    ("ipykernel.comm", "cellbox._comm", "patch_ipykernel_comm"),
    ("pandas.io.formats.printing", "cellbox._hooks", "patch_pandas_printing"),
)


def patch_pandas_printing(printing):
    """pandas turns its table schema output on and off through IPython's
    formatters, and only when IPython is imported: route it to the kernel's."""
    from cellbox.display import enable_table_schema
    original = printing.enable_data_resource_formatter

    def enable_data_resource_formatter(enable):
        enable_table_schema(enable)
        if "IPython" in __import__("sys").modules:
            original(enable)   # IPython's own shell, when the code made one
    printing.enable_data_resource_formatter = enable_data_resource_formatter


# Modules that decide when they are imported whether they run in a notebook
# kernel by looking IPython up in sys.modules (tqdm.autonotebook, behind
# tqdm.auto: `sys.modules['IPython'].get_ipython().config`). ipykernel has
# imported IPython before any cell runs; cellbox imports it only for code
# that uses it, so it is imported just before these run: IPython's lazy
# package (_cellbox_boot.LazyPackageFinder), whose __init__ runs when the
# module then asks it for get_ipython, as it would have run in ipykernel.
_LOOK_FOR_IPYTHON = ("tqdm.autonotebook",)


def _import_ipython():
    try:
        __import__("IPython")
    except ImportError:   # no IPython: the module finds none, as anywhere
        pass


def _lazy(modname, fname):
    def hook(module):
        import importlib
        getattr(importlib.import_module(modname), fname)(module)
    return hook


def install():
    for name, modname, fname in _HOOKS:
        when_imported(name, _lazy(modname, fname))
    for name in _LOOK_FOR_IPYTHON:
        before_import(name, _import_ipython)
