"""cellbox: the Python side of the cellbox kernel.

Public API for user code::

    from cellbox.display import display, HTML, Markdown, Image, clear_output

``display`` is also a builtin in the kernel, as in IPython.
"""
__version__ = "0.1.0"


def __getattr__(name):
    # lazy: `import cellbox` must stay cheap
    if name in ("clear_output", "update_display", "DisplayHandle"):
        import importlib
        return getattr(importlib.import_module("cellbox.display"), name)
    raise AttributeError("module 'cellbox' has no attribute %r" % name)
