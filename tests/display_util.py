"""Helpers for the display tests: run code in a kernel and return its IOPub
messages in a form that can be compared between cellbox and ipykernel.

normalize() keeps what a frontend acts on (message types and their order,
MIME keys, metadata, transient display ids, stream names and texts, comm
targets and data) and replaces what differs by nature between two processes:
memory addresses, random display/comm ids (numbered by first appearance),
and PNG images (decoded: compared by size and pixels, not by bytes, since
cellbox encodes them with its own libpng settings).
"""
import base64
import contextlib
import io
import re

import kutil

_ADDR = re.compile(r"0x[0-9a-f]{6,16}")
_HEX32 = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def collect(kc, code, timeout=60, **kw):
    """-> (reply content, [(msg_type, content, buffers)]) without status/execute_input."""
    out = []

    def hook(m):
        if m["msg_type"] not in ("status", "execute_input"):
            out.append((m["msg_type"], m["content"], m.get("buffers") or []))

    # ipykernel aborts requests that arrive just after an error (its
    # stop_on_error timer): the cells here are independent
    kw.setdefault("stop_on_error", False)
    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout, **kw)
    return reply["content"], out


def png_pixels(b64):
    """(width, height, RGBA bytes) of a base64 PNG."""
    from PIL import Image
    im = Image.open(io.BytesIO(base64.b64decode(b64)))
    im.load()
    return im.size[0], im.size[1], im.convert("RGBA").tobytes()


class Normalizer:
    def __init__(self):
        self.ids = {}

    def _id(self, s):
        if s not in self.ids:
            self.ids[s] = "<id%d>" % len(self.ids)
        return self.ids[s]

    def text(self, s):
        s = _ADDR.sub("0xADDR", s)
        return _HEX32.sub(lambda m: self._id(m.group(0)), s)

    def value(self, mime, v):
        if mime == "image/png" and isinstance(v, str):
            try:
                w, h, px = png_pixels(v)
                return ("png", w, h, hash(px))
            except Exception as e:  # not a PNG: compare as text
                return ("bad png", str(e))
        if mime in ("image/jpeg", "application/pdf") and isinstance(v, str):
            return (mime, len(base64.b64decode(v)) > 0)
        if mime == "image/svg+xml" and isinstance(v, str):
            # matplotlib's SVG: creation date and random (salted) element ids
            v = re.sub(r"<dc:date>[^<]*</dc:date>", "<dc:date/>", v)
            v = re.sub(r"\b[a-z][0-9a-f]{10}\b", lambda m: self._id(m.group(0)), v)
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {k: self.value(k if "/" in k else mime, x) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(mime, x) for x in v]
        return v

    def message(self, msg_type, c, buffers=()):
        if msg_type in ("display_data", "update_display_data", "execute_result"):
            n = {"data": {k: self.value(k, v) for k, v in c.get("data", {}).items()},
                 "mime_keys": sorted(c.get("data", {})),
                 "metadata": self.value("", c.get("metadata", {}))}
            if msg_type != "execute_result":
                tr = dict(c.get("transient") or {})
                if "display_id" in tr:
                    tr["display_id"] = self._id(str(tr["display_id"]))
                n["transient"] = tr
            else:
                n["has_count"] = isinstance(c.get("execution_count"), int)
            return (msg_type, n)
        if msg_type == "stream":
            return (msg_type, c["name"], self.text(c["text"]))
        if msg_type == "error":
            return (msg_type, c["ename"], self.text(c["evalue"]))
        if msg_type == "clear_output":
            return (msg_type, c["wait"])
        if msg_type in ("comm_open", "comm_msg", "comm_close"):
            n = {k: (self._id(v) if k == "comm_id" else self.value("", v)) for k, v in c.items()}
            return (msg_type, n, len(buffers))
        return (msg_type, self.value("", c))

    def messages(self, out):
        return [self.message(t, c, b) for t, c, b in out]


def merge_streams(out):
    """Adjacent stream messages of the same name joined (kernels batch
    output differently; the frontend shows the same text)."""
    merged = []
    for t, c, b in out:
        if t == "stream" and merged and merged[-1][0] == "stream" and merged[-1][1]["name"] == c["name"]:
            merged[-1] = (t, {"name": c["name"], "text": merged[-1][1]["text"] + c["text"]}, b)
        else:
            merged.append((t, dict(c), b))
    return merged


def start(name):
    return kutil.start(name)


@contextlib.contextmanager
def running(name):
    """A started kernel and its client, (km, kc), shut down however the
    block ends."""
    km, kc = start(name)
    try:
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
