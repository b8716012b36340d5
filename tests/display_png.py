"""Matplotlib inline through cellbox's libpng encoder: the images shown are
decoded and compared pixel by pixel with matplotlib's own PNG (Agg + Pillow,
savefig) of the same figure; retina doubles the pixels and halves the
size in the metadata; svg; the inline path does not go through Pillow;
savefig on an inline figure writes a valid file. Output: TAP."""
import base64
import io

from PIL import Image

import display_util as du
import kutil

tap = kutil.TAP()
km, kc = du.start("cellbox")


def run(code):
    reply, out = du.collect(kc, code)
    if reply["status"] != "ok":
        raise RuntimeError("%s: %s" % (reply.get("ename"), reply.get("evalue")))
    return out


def pixels(png_bytes):
    im = Image.open(io.BytesIO(png_bytes))
    im.load()
    return im, im.convert("RGBA")


run("""import io, base64, matplotlib, numpy as np
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
import PIL.Image
_saves = []
_orig_save = PIL.Image.Image.save
def _counting_save(self, *a, **k):
    _saves.append(1)
    return _orig_save(self, *a, **k)
PIL.Image.Image.save = _counting_save
def reference(fig, **kw):
    # matplotlib's own PNG writer (Agg canvas + Pillow) on the same figure
    canvas = FigureCanvasAgg(fig)
    b = io.BytesIO()
    fig.savefig(b, format='png', facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor(), **kw)
    return base64.b64encode(b.getvalue()).decode()
""")

FIGURES = [
    ("line plot 640x480", "plt.figure(figsize=(6.4, 4.8), dpi=100); x = np.linspace(0, 10, 500); "
                          "plt.plot(x, np.sin(x)); plt.title('sin'); plt.grid(True)", {}),
    ("image and colorbar", "plt.figure(figsize=(5, 4), dpi=80); plt.imshow(np.random.RandomState(0).rand(40, 60)); "
                           "plt.colorbar()", {}),
    ("transparent figure", "plt.figure(figsize=(3, 2), facecolor='none'); plt.plot([1, 3, 2], color='C1')", {}),
    ("semi-transparent patches", "fig = plt.figure(figsize=(4, 3), facecolor=(1, 1, 1, 0.3)); "
                                 "plt.fill_between([0, 1, 2], [0, 2, 1], alpha=0.4)", {}),
    ("1920x1080", "plt.figure(figsize=(19.2, 10.8), dpi=100); plt.scatter(*np.random.RandomState(1).rand(2, 300))", {}),
]

for name, code, kw in FIGURES:
    for fmt in ("png", "retina"):
        out = run("%%config InlineBackend.figure_format = %r\n"
                  "%%config InlineBackend.print_figure_kwargs = {'bbox_inches': None}\n"
                  "%s\n_fig = plt.gcf()\n_ref = reference(_fig, dpi=_fig.dpi * %d)\n"
                  "_dpi = _fig.dpi\n_saves.clear()\nplt.show()\nlen(_saves), _ref" % (fmt, code, 2 if fmt == "retina" else 1))
        shown = [c for t, c, b in out if t == "display_data"]
        res = [c for t, c, b in out if t == "execute_result"][0]["data"]["text/plain"]
        nsaves, ref = eval(res)
        if not tap.ok(len(shown) == 1 and "image/png" in shown[0]["data"], "%s, %s: one image/png shown" % (name, fmt), out):
            continue
        ours_png = base64.b64decode(shown[0]["data"]["image/png"])
        ref_png = base64.b64decode(ref)
        im1, px1 = pixels(ours_png)
        im2, px2 = pixels(ref_png)
        tap.eq(px1.size, px2.size, "%s, %s: same size as matplotlib's PNG %s" % (name, fmt, px2.size))
        same = px1.tobytes() == px2.tobytes()
        diff = None
        if not same and px1.size == px2.size:
            a, b = px1.tobytes(), px2.tobytes()
            diff = "%d of %d bytes differ" % (sum(x != y for x, y in zip(a, b)), len(a))
        tap.ok(same, "%s, %s: the same pixels as matplotlib's own PNG (decoded)" % (name, fmt), diff)
        tap.eq(nsaves, 0, "%s, %s: the inline image did not go through Pillow" % (name, fmt))
        md = shown[0]["metadata"].get("image/png")
        if fmt == "retina":
            tap.eq(md, {"width": px1.size[0] // 2, "height": px1.size[1] // 2},
                   "%s, retina: metadata gives half the pixel size" % name)
        else:
            tap.ok(md is None, "%s, png: no size metadata (as matplotlib-inline)" % name, md)
        info = im1.info
        tap.ok(str(info.get("Software", "")).startswith("Matplotlib version"), "%s, %s: Software text chunk" % (name, fmt),
               info)
        tap.ok(abs(info.get("dpi", (0, 0))[0] - round(float(eval(run("_dpi")[0][1]["data"]["text/plain"])) * (2 if fmt == "retina" else 1))) < 1,
               "%s, %s: pHYs gives the dpi" % (name, fmt), info)
        ratio = len(ours_png) / len(ref_png)
        tap.ok(ratio < 1.5, "%s, %s: size %d bytes vs matplotlib's %d (x%.2f)" % (name, fmt, len(ours_png), len(ref_png), ratio))

out = run("%config InlineBackend.figure_format = 'svg'\nplt.plot([1, 2]);")
shown = [c for t, c, b in out if t == "display_data"]
tap.ok(len(shown) == 1 and shown[0]["data"]["image/svg+xml"].lstrip().startswith("<?xml")
       and "<svg" in shown[0]["data"]["image/svg+xml"], "svg format: image/svg+xml", out)
run("%config InlineBackend.figure_format = 'png'")

out = run("f = plt.figure(); plt.plot([1, 2]); import tempfile, os\n"
          "p = os.path.join(tempfile.mkdtemp(), 'x.png'); f.savefig(p); plt.close(f)\n"
          "from PIL import Image as I\nim = I.open(p); im.load(); (im.format, im.size)")
res = [c for t, c, b in out if t == "execute_result"][0]["data"]["text/plain"]
tap.eq(res, "('PNG', (640, 480))", "savefig('x.png') on an inline figure writes a valid PNG file")

out = run("f = plt.figure(); plt.plot([1, 2]); b = io.BytesIO()\n"
          "f.savefig(b, format='png', pil_kwargs={'compress_level': 9}); plt.close(f)\nb.getvalue()[:8]")
res = [c for t, c, b in out if t == "execute_result"][0]["data"]["text/plain"]
tap.eq(res, "b'\\x89PNG\\r\\n\\x1a\\n'", "savefig with pil_kwargs still goes through Pillow")

kc.stop_channels()
km.shutdown_kernel(now=True)
del kc, km
