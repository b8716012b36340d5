"""The inline matplotlib backend of the cellbox kernel (the default).

Figures created in a cell are shown as image/png when the cell ends (and at
plt.show()), then closed, as with ipykernel's matplotlib-inline.
"""
import io

import matplotlib
from matplotlib.backend_bases import FigureManagerBase, _Backend
from matplotlib.backends.backend_agg import FigureCanvasAgg

config = {
    "figure_formats": {"png"},
    "print_figure_kwargs": {"bbox_inches": "tight"},
    "close_figures": True,
    "rc": {},
}

_shell = None
_hooked = False


def configure(trait, value):
    if trait == "figure_format":
        config["figure_formats"] = {value}
    elif trait == "figure_formats":
        config["figure_formats"] = set(value)
    elif trait in ("print_figure_kwargs", "close_figures", "rc"):
        config[trait] = value
    else:
        raise AttributeError("InlineBackend has no trait %r" % trait)


def figure_bundle(fig):
    """(data, metadata) for a figure, in the configured formats."""
    data, md = {}, {}
    fmts = config["figure_formats"]
    kw = dict(config["print_figure_kwargs"])
    if "png" in fmts or "retina" in fmts or "png2x" in fmts:
        retina = "retina" in fmts or "png2x" in fmts
        buf = io.BytesIO()
        dpi = fig.dpi * (2 if retina else 1)
        fig.canvas.print_figure(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor(), **kw)
        png = buf.getvalue()
        import base64
        import struct
        w, h = struct.unpack(">II", png[16:24])
        if retina:
            w, h = w // 2, h // 2
        data["image/png"] = base64.b64encode(png).decode("ascii")
        md["image/png"] = {"width": w, "height": h}
    if "svg" in fmts:
        buf = io.BytesIO()
        fig.canvas.print_figure(buf, format="svg", **kw)
        data["image/svg+xml"] = buf.getvalue().decode("utf-8")
    if "jpeg" in fmts or "jpg" in fmts:
        buf = io.BytesIO()
        fig.canvas.print_figure(buf, format="jpeg", **kw)
        import base64
        data["image/jpeg"] = base64.b64encode(buf.getvalue()).decode("ascii")
    data["text/plain"] = "<%s size %gx%g with %d Axes>" % (
        type(fig).__name__, fig.bbox.width, fig.bbox.height, len(fig.axes))
    return data, md


def _show_figure(fig):
    from cellbox import display as d
    data, md = figure_bundle(fig)
    d.publish_display_data(data, md)


def show(close=None, block=None):
    from matplotlib._pylab_helpers import Gcf
    try:
        for manager in Gcf.get_all_fig_managers():
            _show_figure(manager.canvas.figure)
    finally:
        if close is None:
            close = config["close_figures"]
        if close and Gcf.get_all_fig_managers():
            matplotlib.pyplot.close("all")


def flush_figures():
    """After each cell: show the figures the cell drew, like matplotlib-inline."""
    import sys
    if "matplotlib.pyplot" not in sys.modules:
        return
    if not matplotlib.is_interactive():
        pass
    from matplotlib._pylab_helpers import Gcf
    if Gcf.get_all_fig_managers():
        if matplotlib.get_backend() == "module://cellbox._inline":
            show(True)


class FigureManager(FigureManagerBase):
    def show(self):
        _show_figure(self.canvas.figure)


@_Backend.export
class _BackendInline(_Backend):
    FigureCanvas = FigureCanvasAgg
    FigureManager = FigureManager

    @staticmethod
    def show(close=None, block=None):
        return show(close, block)


def activate(shell, mpl):
    """Called when matplotlib is imported: hook the end-of-cell figure flush."""
    global _shell, _hooked
    _shell = shell
    if not _hooked and shell is not None:
        shell.post_execute.append(flush_figures)
        _hooked = True
    from cellbox import display as d
    d.register_formatter("matplotlib.figure.Figure", figure_bundle)


def enable(shell):
    import matplotlib as mpl
    activate(shell, mpl)
    if mpl.get_backend() != "module://cellbox._inline":
        import matplotlib.pyplot as plt
        plt.switch_backend("module://cellbox._inline")
    mpl.interactive(True)
