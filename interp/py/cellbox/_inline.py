"""The inline matplotlib backend of the cellbox kernel (the default one).

``module://cellbox._inline``, chosen when matplotlib is imported. It behaves like ipykernel's
matplotlib-inline: once the backend is in use, matplotlib is interactive,
figures created in a cell are displayed when the cell ends (and at
``plt.show()``) and then closed, and a Figure shown as a result or through
``display()`` is rendered in the configured formats (``%config
InlineBackend.figure_format = 'png' | 'retina' | 'svg' | 'jpeg' | 'pdf'``;
retina renders at twice the dpi and says half the pixel size in the
metadata). The messages are the ones matplotlib-inline produces.

The difference is the PNG: the Agg canvas renders as usual, and its RGBA
buffer is encoded in C by libpng (interp/png.c, through
``_cellbox_c.png_encode``, without the GIL) instead of going through
Pillow; the pixels are the same, the encoding several times faster. The
canvas of the figures made here also uses it for ``savefig('x.png')``
(unless ``pil_kwargs`` ask for Pillow's options).

Importing this module is cheap (it is imported with matplotlib); the
matplotlib backend classes are built when pyplot first uses the backend.
"""
import sys

import _cellbox_c

BACKEND = "module://cellbox._inline"
_ALIASES = ("module://matplotlib_inline.backend_inline", "module://ipykernel.pylab.backend_inline")

__all__ = ["config", "configure", "set_formats", "show", "flush_figures", "enable", "activate",
           "figure_png", "encode_png"]

# InlineBackend's traits, with matplotlib-inline's defaults
config = {
    "figure_formats": {"png"},
    "print_figure_kwargs": {"bbox_inches": "tight"},
    "close_figures": True,
    "rc": {},
    "figure_format": "",
}
_SUPPORTED = {"png", "png2x", "retina", "jpg", "jpeg", "svg", "pdf"}

_shell = None
_integrated = False
_to_draw = []
_draw_called = False


# -- configuration -----------------------------------------------------------------------

def configure(trait, value):
    """%config InlineBackend.<trait> = value."""
    if trait == "figure_format":
        if value:
            configure("figure_formats", {value})
        config["figure_format"] = str(value)   # shown by %config InlineBackend
        return
    if trait == "figure_formats":
        formats = {value} if isinstance(value, str) else set(value)
        bad = formats - _SUPPORTED
        if bad:
            raise ValueError("supported formats are: %s not %s" % (
                ",".join(repr(f) for f in sorted(_SUPPORTED)), ",".join(repr(f) for f in bad)))
        config["figure_formats"] = formats
    elif trait == "print_figure_kwargs":
        config["print_figure_kwargs"] = dict(value)
    elif trait == "close_figures":
        config["close_figures"] = bool(value)
    elif trait == "rc":
        config["rc"] = dict(value)
        if "matplotlib" in sys.modules:
            sys.modules["matplotlib"].rcParams.update(config["rc"])
        return
    else:
        raise AttributeError("InlineBackend has no trait %r" % trait)
    if _integrated:
        _select_formats()


def set_formats(*formats, **kwargs):
    """IPython.display.set_matplotlib_formats('png', 'retina', ..., **print_figure_kwargs)."""
    kw = dict(config["print_figure_kwargs"])
    kw.update(kwargs)
    config["print_figure_kwargs"] = kw
    configure("figure_formats", set(formats))
    if not _integrated:
        _select_formats()


# -- rendering -----------------------------------------------------------------------------

def encode_png(rgba, width, height, dpi=0.0, metadata=None):
    """PNG bytes of a width x height RGBA buffer (libpng, the fast settings)."""
    return _cellbox_c.png_encode(rgba, width, height, dpi=float(dpi or 0), text=metadata)


def _software():
    import matplotlib
    return "Matplotlib version%s, https://matplotlib.org/" % matplotlib.__version__


_canvas_cls = None


def _canvas_class():
    """FigureCanvasAgg whose print_png encodes with libpng (built on first use)."""
    global _canvas_cls
    if _canvas_cls is not None:
        return _canvas_cls
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    class FigureCanvasInline(FigureCanvasAgg):
        """Agg, with PNG files written by cellbox's libpng encoder."""

        _cellbox_pooled = False

        def get_renderer(self, *args, **kwargs):
            if not self._cellbox_pooled:
                return FigureCanvasAgg.get_renderer(self, *args, **kwargs)
            # rendering for display: a renderer kept from the previous figure
            # of the same size (see _take_renderer)
            w, h = self.figure.bbox.size
            key = (w, h, self.figure.dpi)
            if self._lastKey != key:
                _give_back(self)
                self.renderer = _take_renderer(key)
                self._cellbox_taken = (key, self.renderer)
                self._lastKey = key
            return self.renderer

        def draw_idle(self, *args, **kwargs):
            # Inline figures are rendered when they are shown. (Without this,
            # pyplot in interactive mode renders the whole figure on every
            # change when IPython is not imported.)
            pass

        def print_png(self, filename_or_obj, *, metadata=None, pil_kwargs=None, **kwargs):
            # kwargs: print_figure's facecolor, orientation, ... (already applied)
            if pil_kwargs:
                return FigureCanvasAgg.print_png(self, filename_or_obj, metadata=metadata, pil_kwargs=pil_kwargs)
            FigureCanvasAgg.draw(self)
            renderer = self.get_renderer()
            text = {"Software": _software()}
            if metadata:
                text.update({k: v for k, v in metadata.items() if v is not None})
            png = _cellbox_c.png_encode(renderer.buffer_rgba(), int(renderer.width), int(renderer.height),
                                        dpi=float(self.figure.dpi), text=text)
            if hasattr(filename_or_obj, "write"):
                filename_or_obj.write(png)
            else:
                import os
                with open(os.fspath(filename_or_obj), "wb") as f:
                    f.write(png)

    _canvas_cls = FigureCanvasInline
    return _canvas_cls


# Renderers kept between figures shown inline, by (width, height, dpi).
# matplotlib caches text metrics per renderer, so a new renderer for every
# figure measures every tick label again: reusing one saves ~2 ms a figure.
# Only the inline display path uses them, and it gives the canvas back its
# own renderer afterwards (see _print), so a figure's canvas never shows
# another figure's pixels.
_renderers = {}
_MAX_POOLED = 2
_MAX_POOLED_PIXELS = 4096 * 2160


def _take_renderer(key):
    """A renderer for (width, height, dpi), out of the pool while in use (a
    figure shown from another thread meanwhile gets its own)."""
    r = _renderers.pop(key, None)
    if r is None:
        from matplotlib.backends.backend_agg import RendererAgg
        r = RendererAgg(*key)
    return r


def _give_back(canvas):
    taken = canvas.__dict__.pop("_cellbox_taken", None)
    if taken is None:
        return
    key, r = taken
    if key[0] * key[1] <= _MAX_POOLED_PIXELS:
        _renderers[key] = r   # most recent last
        while len(_renderers) > _MAX_POOLED:
            del _renderers[next(iter(_renderers))]


def _print(fig, fmt, **kwargs):
    """fig rendered as fmt (bytes; str for svg), or None for an empty figure
    (IPython's print_figure contract)."""
    if not fig.axes and not fig.lines:
        return None
    dpi = fig.dpi
    if fmt == "retina":
        dpi, fmt = dpi * 2, "png"
    kw = {"format": fmt, "facecolor": fig.get_facecolor(), "edgecolor": fig.get_edgecolor(), "dpi": dpi,
          "bbox_inches": "tight"}
    kw.update(kwargs)
    import io
    sink = io.BytesIO()
    canvas = fig.canvas
    ours = _canvas_class()
    if fmt == "png":
        if type(canvas) is ours:
            target = canvas
        else:
            # render through our canvas for once, as print_figure itself does
            # when it switches canvases; the figure keeps its own
            target = ours(fig)
        saved = target.__dict__.get("renderer"), target.__dict__.get("_lastKey")
        target._cellbox_pooled = True
        try:
            target.print_figure(sink, **kw)
        finally:
            del target._cellbox_pooled
            _give_back(target)
            target._lastKey = saved[1]
            if saved[0] is not None:
                target.renderer = saved[0]
            else:
                target.__dict__.pop("renderer", None)
                target.__dict__.pop("_lastKey", None)
            if target is not canvas:
                fig.set_canvas(canvas)
    else:
        if canvas is None:
            from matplotlib.backend_bases import FigureCanvasBase
            canvas = FigureCanvasBase(fig)
        canvas.print_figure(sink, **kw)
    data = sink.getvalue()
    return data.decode("utf-8") if fmt == "svg" else data


def _b64(data):
    import binascii
    return binascii.b2a_base64(data).decode("ascii")   # with the newline, like IPython


def figure_png(fig, **kwargs):
    """PNG bytes of a figure, as shown inline (None for an empty figure)."""
    return _print(fig, "png", **kwargs)


def _png_printer(fig, **kwargs):
    data = _print(fig, "png", **kwargs)
    return None if data is None else _b64(data)


def _retina_printer(fig, **kwargs):
    data = _print(fig, "retina", **kwargs)
    if data is None:
        return None
    import struct
    w, h = struct.unpack(">II", data[16:24])
    return _b64(data), {"width": w // 2, "height": h // 2}


def _select_formats():
    """Register the Figure printers of the configured formats (IPython's
    select_figure_formats)."""
    from functools import partial
    from matplotlib.figure import Figure
    from cellbox.display import get_formatter
    fmts = get_formatter().formatters
    for f in fmts.values():
        f.pop(Figure, None)
    formats = config["figure_formats"]
    kw = config["print_figure_kwargs"]
    if "png" in formats:
        fmts["image/png"].for_type(Figure, partial(_png_printer, **kw))
    if "retina" in formats or "png2x" in formats:
        fmts["image/png"].for_type(Figure, partial(_retina_printer, **kw))
    if "jpg" in formats or "jpeg" in formats:
        fmts["image/jpeg"].for_type(Figure, lambda fig: _b64_or_none(_print(fig, "jpg", **kw)))
    if "svg" in formats:
        fmts["image/svg+xml"].for_type(Figure, partial(_print, fmt="svg", **kw))
    if "pdf" in formats:
        fmts["application/pdf"].for_type(Figure, lambda fig: _b64_or_none(_print(fig, "pdf", **kw)))


def _b64_or_none(data):
    return None if data is None else _b64(data)


# -- showing figures --------------------------------------------------------------------------

def _metadata(fig):
    """matplotlib-inline's hint for transparent figures: the background the
    tick labels need."""
    from matplotlib import colors
    if colors.to_rgba(fig.get_facecolor())[3] >= 0.5:
        return None
    labels = [label.get_color() for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)
              for label in axis.get_ticklabels()]
    if not labels:
        return None
    light = colors.to_rgba_array(labels)[:, :3].dot((.299, .587, .114)) > .5
    if light.size and (light == light[0]).all():
        return {"needs_background": "dark" if light[0] else "light"}
    return None


def _display(fig):
    from cellbox.display import display
    display(fig, metadata=_metadata(fig))


def show(close=None, block=None):
    """plt.show(): display every open figure, then close them."""
    global _to_draw
    from matplotlib._pylab_helpers import Gcf
    if close is None:
        close = config["close_figures"]
    try:
        for manager in Gcf.get_all_fig_managers():
            _display(manager.canvas.figure)
    finally:
        _to_draw = []
        if close and Gcf.get_all_fig_managers():
            import matplotlib.pyplot
            matplotlib.pyplot.close("all")


def flush_figures():
    """After each cell (post_execute): show the figures the cell drew."""
    global _to_draw, _draw_called
    if not _draw_called:
        return
    try:
        if config["close_figures"]:
            try:
                return show(True)
            except Exception:
                from cellbox._ipython import show_exception
                show_exception()
                return
        from matplotlib._pylab_helpers import Gcf
        active = {m.canvas.figure for m in Gcf.get_all_fig_managers()}
        for fig in [f for f in _to_draw if f in active]:
            try:
                _display(fig)
            except Exception:
                from cellbox._ipython import show_exception
                show_exception()
                return
    finally:
        _to_draw = []
        _draw_called = False


# -- the backend module API (pyplot calls these) --------------------------------------------

def new_figure_manager(num, *args, FigureClass=None, **kwargs):
    if FigureClass is None:
        from matplotlib.figure import Figure as FigureClass
    return new_figure_manager_given_figure(num, FigureClass(*args, **kwargs))


def new_figure_manager_given_figure(num, figure):
    global _draw_called
    import matplotlib
    _integrate()
    manager = _canvas_class().new_manager(figure, num)
    if not matplotlib.is_interactive():
        return manager
    try:
        _to_draw.remove(figure)
    except ValueError:
        pass
    _to_draw.append(figure)
    _draw_called = True
    return manager


def __getattr__(name):
    # pyplot reads FigureCanvas when it loads the backend: that is when the
    # integration starts, as with matplotlib-inline (imported at that moment)
    if name in ("FigureCanvas", "FigureManager"):
        _integrate()
        cls = _canvas_class()
        g = globals()
        g["FigureCanvas"] = cls
        g["FigureManager"] = cls.manager_class
        return g[name]
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def _integrate():
    """The backend is in use: interactive mode, the end-of-cell flush and
    the Figure formatters (IPython's activate_matplotlib +
    configure_inline_support)."""
    global _integrated
    if _integrated:
        return
    _integrated = True
    import matplotlib
    matplotlib.interactive(True)
    if config["rc"]:
        matplotlib.rcParams.update(config["rc"])
    shell = _shell
    if shell is None:
        from cellbox import _kernel
        shell = _kernel._shell
    if shell is not None and flush_figures not in shell.post_execute:
        shell.post_execute.append(flush_figures)
    _select_formats()
    _tune_gc()


# Plotting allocates and drops tens of thousands of container objects per
# figure (artists, ticks, transforms), and a closed figure is a graph of
# cycles: with Python's default young-generation threshold (700) the
# collector runs a hundred times for 20 figures, ~5-10% of the time to draw
# and show them. A larger first threshold makes the young collections rarer
# (the older generations keep their defaults), for at most a few MB of
# garbage waiting longer. A threshold the user has set is left alone.
_GC_YOUNG = 10000


def _tune_gc():
    import gc
    t = gc.get_threshold()
    if t == (700, 10, 10):
        gc.set_threshold(_GC_YOUNG, t[1], t[2])


def activate(shell, mpl):
    """Called when matplotlib is imported (cheap): make this the backend, as
    ipykernel does with MPLBACKEND (over matplotlibrc), unless MPLBACKEND
    names another one; matplotlib-inline's name means this one (it needs a
    real IPython shell). The kernel does not set MPLBACKEND itself: programs
    it starts would inherit a backend they cannot import."""
    global _shell
    _shell = shell
    import os
    env = os.environ.get("MPLBACKEND")
    if not env or env in _ALIASES:
        try:
            mpl.rcParams["backend"] = BACKEND
        except Exception:  # never break the user's import
            pass


def enable(shell):
    """%matplotlib inline."""
    global _shell
    _shell = shell
    import matplotlib
    import matplotlib.pyplot as plt
    if dict.get(matplotlib.rcParams, "backend") != BACKEND:
        plt.switch_backend(BACKEND)
    _integrate()
    matplotlib.interactive(True)
