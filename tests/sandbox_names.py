"""tests/sandbox_names.py: file names that are not UTF-8, with `cellbox serve`
(the real server, real namespaces, real files made by exec in the sandbox,
Python's http.client and curl). Prints TAP.

A Linux name is bytes. Every reply must still be valid JSON: a name or path
that is not UTF-8 is shown with U+FFFD for each bad byte, and the exact bytes
are in a sibling `…Base64` field (only then). Requests name such a file with
`pathBase64` (`oldPathBase64`, `newPathBase64`...), held to the same path
rules as `path`.

Sections: listing (flat, recursive, mixed with valid names), one file
(stat, exists, read, raw read), changes (write, upload, mkdir, move,
delete), bad requests (both fields, bad base64, NUL), escapes (.., absolute
paths, symlinks: the base64 form is refused exactly like the plain one),
watching (events, a folder given as pathBase64, globs on raw bytes, the end
of the stream), git checkout (a branch name that is not UTF-8, a target
folder given as targetDirBase64), backups of a folder whose own name is not
UTF-8 (pathBase64 in, out, and in the stored record), error messages, and
curl piped to `python3 -m json.tool`.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import SSEStream, TAP, Server, can_sandbox  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

srv = Server(env={"CELLBOX_SSE_KEEPALIVE_MS": "300"})
SID = "names"
IDS = [SID]
SB = "/v1/sandboxes/" + SID
N = b"/workspace/n"
FFFD = "\ufffd"

# name on disk -> what a reply shows (each bad byte one U+FFFD)
BAD = {
    b"caf\xe9": "caf" + FFFD,                    # Latin-1 e-acute
    b"caf\xe8": "caf" + FFFD,                    # another, shown the same: only base64 tells them apart
    b"bad\xff\xfe.txt": "bad" + FFFD * 2 + ".txt",
    b"ovl\xc0\xaf": "ovl" + FFFD * 2,            # an overlong "/"
    b"sur\xed\xa0\x80": "sur" + FFFD * 3,        # an encoded surrogate
}
GOOD = ["café.txt", "😀.txt", "中文.txt"]
SUBDIR = b"dir\x80"


def b64(raw):
    return base64.b64encode(raw).decode()


def unb64(text):
    return base64.b64decode(text, validate=True)


def strict(body):
    """The body as JSON, read strictly (bytes must be UTF-8): the value, or
    an exception text."""
    try:
        return json.loads(body.decode("utf-8", errors="strict"))
    except (UnicodeDecodeError, ValueError) as e:
        return "not valid JSON: %s" % e


def post(op, body):
    return srv.post("%s/files/%s" % (SB, op), body)


def sh(cmd):
    j = srv.sh(SID, cmd)
    if j["exitCode"] != 0:
        raise RuntimeError("%r: %r" % (cmd, j))
    return j["stdout"]


def q(raw):
    """A byte string as a bash $'...' word."""
    return "$'" + "".join("\\x%02x" % c for c in raw) + "'"


def names_in(folder):
    """The exact names in a sandbox folder, read with find | base64 inside it
    (None when it cannot be listed)."""
    j = srv.sh(SID, "cd %s && find . -mindepth 1 -maxdepth 1 -printf '%%P\\0' | base64 -w0" % q(folder))
    if j["exitCode"] != 0:
        return None
    return set(n for n in base64.b64decode(j["stdout"]).split(b"\0") if n)


def cat(path):
    """The bytes of a sandbox file (None when it cannot be read)."""
    j = srv.sh(SID, "base64 -w0 < %s" % q(path))
    return base64.b64decode(j["stdout"]) if j["exitCode"] == 0 else None


def has_b64_keys(obj):
    return [k for k in obj if k.endswith("Base64")]


def section(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001
        t.ok(False, "%s: no unexpected exception" % fn.__name__, traceback.format_exc())


def setup():
    cmds = ["rm -rf /workspace/n", "mkdir -p /workspace/n/%s" % q(SUBDIR), "cd /workspace/n"]
    for raw in BAD:
        cmds.append("printf 'bytes of %%s\\n' %s > %s" % (q(raw), q(raw)))
    for name in GOOD:
        cmds.append("printf 'good\\n' > %s" % q(name.encode()))
    cmds.append("touch %s/%s %s/ok.txt" % (q(SUBDIR), q(b"in\xc3"), q(SUBDIR)))
    sh(" && ".join(cmds))


# ---- listing ------------------------------------------------------------------

def s_list():
    r = post("list", {"path": "/workspace/n"})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict), "list of a folder with bad names: strict JSON", (r, j))
    by_raw = {}
    for e in j["files"] if isinstance(j, dict) else []:
        raw = unb64(e["nameBase64"]) if "nameBase64" in e else e["name"].encode()
        by_raw[raw] = e
    on_disk = names_in(N)
    t.eq(set(by_raw), on_disk, "list: the names (base64 where given) are exactly the bytes on disk")
    ok = all(by_raw[raw]["name"] == shown and unb64(by_raw[raw]["nameBase64"]) == raw
             for raw, shown in BAD.items() if raw in by_raw)
    t.ok(ok and all(raw in by_raw for raw in BAD), "list: each bad name shows U+FFFD per bad byte, "
         "nameBase64 holds its exact bytes", [by_raw.get(raw) for raw in BAD])
    e = by_raw.get(b"caf\xe9", {})
    t.ok(e.get("absolutePath") == "/workspace/n/caf" + FFFD
         and unb64(e.get("absolutePathBase64", "")) == b"/workspace/n/caf\xe9"
         and e.get("relativePath") == "caf" + FFFD and unb64(e.get("relativePathBase64", "")) == b"caf\xe9",
         "list: absolutePath / relativePath are lossy too, with absolutePathBase64 / relativePathBase64", e)
    good = [by_raw.get(n.encode()) for n in GOOD]
    t.ok(all(g and g["name"] == n and g["absolutePath"] == "/workspace/n/" + n and not has_b64_keys(g)
             for g, n in zip(good, GOOD)),
         "list: valid UTF-8 names (café, emoji, CJK) are unchanged and get no Base64 field", good)
    t.ok(isinstance(j, dict) and "café.txt".encode() in r.body and "中文.txt".encode() in r.body,
         "list: valid UTF-8 is sent as UTF-8 text, not escaped or replaced")
    t.ok(isinstance(j, dict) and "pathBase64" not in j, "list: the folder's own path is UTF-8: no pathBase64", j)

    r = post("list", {"path": "/workspace/n", "recursive": True})
    j = strict(r.body)
    rels = {(e["relativePath"], unb64(e["relativePathBase64"]) if "relativePathBase64" in e else None)
            for e in j["files"]} if isinstance(j, dict) else j
    t.ok(isinstance(j, dict) and ("dir" + FFFD + "/in" + FFFD, b"dir\x80/in\xc3") in rels
         and ("dir" + FFFD + "/ok.txt", b"dir\x80/ok.txt") in rels,
         "recursive list: entries below a bad folder name carry their exact relative bytes", rels)

    r = post("list", {"pathBase64": b64(N + b"/" + SUBDIR)})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["path"] == "/workspace/n/dir" + FFFD
         and unb64(j["pathBase64"]) == N + b"/" + SUBDIR
         and sorted(e["name"] for e in j["files"]) == ["in" + FFFD, "ok.txt"],
         "list of a folder named by pathBase64: its own files, path + pathBase64 in the reply", (r, j))


# ---- one file -----------------------------------------------------------------

def s_one_file():
    raw = N + b"/caf\xe9"
    r = post("stat", {"pathBase64": b64(raw)})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["exists"] and j["type"] == "file"
         and j["name"] == "caf" + FFFD and unb64(j["nameBase64"]) == b"caf\xe9"
         and unb64(j["absolutePathBase64"]) == raw and j["size"] == len(b"bytes of caf\xe9\n"),
         "stat by pathBase64: that exact file, with nameBase64 / absolutePathBase64", (r, j))
    r = post("exists", {"pathBase64": b64(raw)})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["exists"] is True and unb64(j["pathBase64"]) == raw,
         "exists by pathBase64: true", (r, j))
    r = post("exists", {"pathBase64": b64(N + b"/caf\xea")})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["exists"] is False,
         "exists by pathBase64 of a missing name (shown the same, other bytes): false", (r, j))

    for name in (b"caf\xe9", b"caf\xe8"):
        r = post("read", {"pathBase64": b64(N + b"/" + name), "encoding": "base64"})
        j = strict(r.body)
        t.ok(r.status == 200 and isinstance(j, dict) and unb64(j["content"]) == b"bytes of " + name + b"\n"
             and j["path"] == "/workspace/n/caf" + FFFD and unb64(j["pathBase64"]) == N + b"/" + name,
             "read by pathBase64 %r: that file's bytes (two names that show alike are told apart)" % name,
             (r, j))
    r = post("read", {"path": "/workspace/n/中文.txt"})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["content"] == "good\n"
         and j["path"] == "/workspace/n/中文.txt" and not has_b64_keys(j),
         "read by a valid UTF-8 path: as before, no pathBase64 in the reply", (r, j))
    r = post("read", {"pathBase64": b64("/workspace/n/😀.txt".encode())})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["path"] == "/workspace/n/😀.txt" and not has_b64_keys(j),
         "read by pathBase64 of a valid UTF-8 name: the reply has the plain path only", (r, j))

    r = srv.get("%s/files/content?pathBase64=%s" % (SB, urllib.parse.quote(b64(N + b"/bad\xff\xfe.txt"))))
    t.ok(r.status == 200 and r.body == b"bytes of bad\xff\xfe.txt\n",
         "GET files/content?pathBase64=...: the raw bytes of that file", r)
    # in a query a bare '+' reads as a space: refused, never decoded to other bytes
    plus = b64(N + b"/bad\xff\xfe.txt")
    r = srv.get("%s/files/content?pathBase64=%s" % (SB, plus))
    j = strict(r.body)
    t.ok("+" in plus and r.status == 400 and isinstance(j, dict) and "pathBase64" in j["error"]["message"],
         "GET files/content?pathBase64= with a bare '+' (not %2B): 400, not some other file", (plus, r))
    r = srv.get("%s/files/content?path=%s&pathBase64=%s" % (SB, "x", urllib.parse.quote(b64(b"y"))))
    j = strict(r.body)
    t.ok(r.status == 400 and isinstance(j, dict) and j["error"]["code"] == "VALIDATION_FAILED"
         and "not both" in j["error"]["message"],
         "GET files/content with path and pathBase64: 400 VALIDATION_FAILED", (r, j))


# ---- changes ------------------------------------------------------------------

def s_changes():
    raw = N + b"/new\xfa.txt"
    r = post("write", {"pathBase64": b64(raw), "content": "written\n"})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["path"] == "/workspace/n/new" + FFFD + ".txt"
         and unb64(j["pathBase64"]) == raw, "write by pathBase64: 200, path + pathBase64", (r, j))
    t.ok(b"new\xfa.txt" in names_in(N) and cat(raw) == b"written\n",
         "write by pathBase64: the exact name is on disk, with the content")

    raw = N + b"/up\xfb.bin"
    r = srv.put("%s/files/content?pathBase64=%s&mode=0600" % (SB, urllib.parse.quote(b64(raw))),
                raw=b"\x00\x01upload")
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and unb64(j["pathBase64"]) == raw and j["size"] == 8,
         "PUT files/content?pathBase64=...: 200 with pathBase64", (r, j))
    t.ok(cat(raw) == b"\x00\x01upload", "upload by pathBase64: the exact name holds the bytes")

    raw = N + b"/mk\xfc/deep\xfd"
    r = post("mkdir", {"pathBase64": b64(raw), "recursive": True})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and unb64(j["pathBase64"]) == raw
         and names_in(N + b"/mk\xfc") == {b"deep\xfd"}, "mkdir -p by pathBase64: the exact folders", (r, j))

    src, dst = N + b"/caf\xe8", N + b"/moved\xe8"
    r = post("move", {"oldPathBase64": b64(src), "newPathBase64": b64(dst)})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["oldPath"] == "/workspace/n/caf" + FFFD
         and unb64(j["oldPathBase64"]) == src and j["newPath"] == "/workspace/n/moved" + FFFD
         and unb64(j["newPathBase64"]) == dst, "move by oldPathBase64 / newPathBase64: both paths in the reply",
         (r, j))
    names = names_in(N)
    t.ok(b"moved\xe8" in names and b"caf\xe8" not in names and b"caf\xe9" in names,
         "move: that exact file moved; the one shown alike (caf\\xe9) stayed", names)
    r = post("rename", {"from": "/workspace/n/café.txt", "toBase64": b64(N + b"/cafe\xe9.txt")})
    j = strict(r.body)
    names = names_in(N)
    t.ok(r.status == 200 and b"cafe\xe9.txt" in names and "café.txt".encode() not in names
         and isinstance(j, dict) and "oldPathBase64" not in j and unb64(j["newPathBase64"]) == N + b"/cafe\xe9.txt",
         "rename from a UTF-8 name (from) to bytes (toBase64): the aliases take Base64 too", (r, j))
    r = post("rename", {"fromBase64": b64(N + b"/cafe\xe9.txt"), "newPath": "/workspace/n/café.txt"})
    t.ok(r.status == 200 and "café.txt".encode() in names_in(N), "and back (fromBase64 + newPath)", r)

    r = post("delete", {"pathBase64": b64(N + b"/caf\xe9")})
    j = strict(r.body)
    names = names_in(N)
    t.ok(r.status == 200 and isinstance(j, dict) and unb64(j["pathBase64"]) == N + b"/caf\xe9"
         and b"caf\xe9" not in names and b"moved\xe8" in names and b"bad\xff\xfe.txt" in names,
         "delete by pathBase64: only that exact file is gone", (r, j, names))
    r = post("delete", {"pathBase64": b64(N + b"/mk\xfc"), "recursive": True})
    t.ok(r.status == 200 and b"mk\xfc" not in names_in(N), "recursive delete of a folder by pathBase64", r)


# ---- bad requests -------------------------------------------------------------

def s_bad_requests():
    def bad(op, body, want, name, after=lambda: True):
        r = post(op, body)
        j = strict(r.body)
        t.ok(r.status == 400 and isinstance(j, dict) and j["error"]["code"] == "VALIDATION_FAILED"
             and want in j["error"]["message"] and after(), name, (r, j))

    bad("read", {"path": "/workspace/n/中文.txt", "pathBase64": b64(b"/workspace/n/x")}, "not both",
        "path and pathBase64 together: 400 VALIDATION_FAILED (give one)")
    bad("write", {"path": "a", "pathBase64": b64(b"a"), "content": ""}, "not both",
        "write with both: 400, nothing written", lambda: b"a" not in names_in(b"/workspace"))
    bad("move", {"oldPath": "/workspace/n/中文.txt", "oldPathBase64": b64(b"x"), "newPath": "y"}, "not both",
        "move with oldPath and oldPathBase64: 400")
    bad("move", {"oldPath": "/workspace/n/中文.txt", "newPath": "y", "newPathBase64": b64(b"y")}, "not both",
        "move with newPath and newPathBase64: 400")
    bad("read", {"pathBase64": "%%%not base64"}, "pathBase64 is not valid base64",
        "pathBase64 that is not base64: 400")
    bad("read", {"pathBase64": "Y2Fm6Q"}, "pathBase64 is not valid base64",
        "pathBase64 without its padding: 400 (standard base64 only)")
    bad("delete", {"pathBase64": b64(b"/workspace/n/a\x00b")}, "NUL",
        "pathBase64 holding a NUL byte: 400")
    bad("delete", {"pathBase64": b64(b"/workspace/n\x00"), "recursive": True}, "NUL",
        "pathBase64 with a NUL at the end: 400, /workspace/n (where a cut would lead) is still there",
        lambda: b"n" in names_in(b"/workspace"))
    bad("list", {"pathBase64": 5}, "pathBase64 must be a string", "pathBase64 that is not a string: 400")
    bad("move", {"oldPathBase64": "@@", "newPath": "y"}, "oldPathBase64 is not valid base64",
        "oldPathBase64 that is not base64: 400")
    w = RawWatch({"path": "/workspace/n", "pathBase64": b64(N)})
    t.ok(w.status == 400 and isinstance(w.error, dict) and "not both" in w.error["error"]["message"],
         "watch with path and pathBase64: 400 (no stream)", (w.status, getattr(w, "error", None)))
    w.close()


# ---- escapes ------------------------------------------------------------------

HOST = "/tmp/names-host-%d" % os.getpid()


def same(op, body_plain, body_b64, name, twin=False):
    """The same request with path and with pathBase64: the same error (the
    same code for a twin, a plain-named file standing for a bad-named one)."""
    a, b = post(op, body_plain), post(op, body_b64)
    ja, jb = strict(a.body), strict(b.body)
    err = lambda j: (j.get("error", {}).get("code") if twin else j.get("error")) if isinstance(j, dict) else j  # noqa: E731
    t.ok(a.status == b.status and a.status >= 400 and err(ja) == err(jb) and b"HOST SECRET" not in b.body,
         name + ": refused like the plain path (%d %s)" % (a.status, ja.get("error", {}).get("code")
                                                           if isinstance(ja, dict) else ja), (a, b))


def s_escapes():
    with open(HOST, "w") as f:
        f.write("HOST SECRET\n")
    up = "/../../../../.." + HOST
    same("read", {"path": up}, {"pathBase64": b64(up.encode())}, "read '/../../..%s' by pathBase64" % HOST)
    rel = "../../../../../.." + HOST
    same("read", {"path": rel}, {"pathBase64": b64(rel.encode())}, "read '../../..%s' (relative)" % HOST)
    same("read", {"path": "/proc/self/environ"}, {"pathBase64": b64(b"/proc/self/environ")},
         "read /proc/self/environ (a kernel file system)")
    same("delete", {"path": "/", "recursive": True}, {"pathBase64": b64(b"/"), "recursive": True}, "delete /")
    same("write", {"path": "/proc/sys/kernel/hostname", "content": "x"},
         {"pathBase64": b64(b"/proc/sys/kernel/hostname"), "content": "x"}, "write below /proc")
    # symlinks made by the sandbox's code, under a bad name and a good twin
    sh("cd /workspace/n && ln -sfn %s %s && ln -sfn %s abs-twin && "
       "ln -sfn ../../../../../../tmp %s && ln -sfn ../../../../../../tmp up-twin"
       % (q(HOST.encode()), q(b"abs\xe9"), q(HOST.encode()), q(b"up\xe9")))
    same("read", {"path": "/workspace/n/abs-twin"}, {"pathBase64": b64(N + b"/abs\xe9")},
         "read through an absolute symlink to the host file", twin=True)
    pwn = "names-pwn-%d" % os.getpid()
    a = post("write", {"path": "/workspace/n/up-twin/" + pwn, "content": "x"})
    b = post("write", {"pathBase64": b64(N + b"/up\xe9/" + pwn.encode()), "content": "x"})
    t.ok(a.status == b.status and not os.path.exists("/tmp/" + pwn),
         "write through a '../..' symlink by pathBase64: stays in the sandbox (its own /tmp), like the plain "
         "path (%d, %d)" % (a.status, b.status), (a, b))
    b = post("delete", {"pathBase64": b64(N + b"/abs\xe9")})
    t.ok(b.status == 200 and os.path.exists(HOST) and b"abs\xe9" not in names_in(N),
         "delete of a symlink by pathBase64 removes the link, never its target", b)
    os.unlink(HOST)


# ---- watching -----------------------------------------------------------------

class RawWatch(SSEStream):
    """A watch stream (sandbox_lib.SSEStream) whose data is read strictly:
    the JSON, or the text of why it is not JSON."""

    def __init__(self, body):
        super().__init__(srv, SB + "/files/watch", body)

    @staticmethod
    def decode(data):
        return strict(data)

    def find(self, ev, raw_path, timeout=20):
        """The event `ev` whose path (base64 where given) is raw_path."""
        def hit(evs):
            for e, d in evs:
                if e == ev and isinstance(d, dict):
                    p = unb64(d["pathBase64"]) if "pathBase64" in d else d.get("path", "").encode()
                    if p == raw_path:
                        return d
            return None
        self.wait(hit, timeout)
        with self.cv:
            return hit(self.events)

    def invalid(self):
        with self.cv:
            return [d for _, d in self.events if not isinstance(d, dict)]


def s_watch():
    W = b"/workspace/wt"
    sh("rm -rf /workspace/wt && mkdir -p /workspace/wt")
    w = RawWatch({"path": "/workspace/wt"})
    t.ok(w.status == 200 and w.wait(lambda evs: any(e == "watching" for e, _ in evs)), "watch /workspace/wt",
         w.status)
    sh("cd /workspace/wt && touch %s && echo x >> %s && mv %s %s && rm %s && mkdir %s && touch %s/%s" % (
        q(b"w\xe9"), q(b"w\xe9"), q(b"w\xe9"), q(b"m\xe9"), q(b"m\xe9"), q(b"d\xff"), q(b"d\xff"), q(b"in\xfe")))
    c = w.find("create", W + b"/w\xe9")
    t.ok(c and c["path"] == "/workspace/wt/w" + FFFD, "watch: create of a bad name, path with U+FFFD and "
         "pathBase64 with its bytes", c)
    m = w.find("modify", W + b"/w\xe9")
    t.ok(m is not None, "watch: modify of it, by its exact bytes", m)
    mv = w.find("move", W + b"/m\xe9")
    t.ok(mv and mv["path"] == "/workspace/wt/m" + FFFD and mv.get("oldPath") == "/workspace/wt/w" + FFFD
         and unb64(mv.get("oldPathBase64", "")) == W + b"/w\xe9",
         "watch: move has oldPath with U+FFFD and oldPathBase64", mv)
    t.ok(w.find("delete", W + b"/m\xe9") is not None, "watch: delete of the bad name")
    t.ok(w.find("create", W + b"/d\xff/in\xfe") is not None, "watch: a file in a new bad-named folder")
    sh("touch /workspace/wt/ok-é.txt")
    ok = w.find("create", "/workspace/wt/ok-é.txt".encode())
    t.ok(ok and not has_b64_keys(ok), "watch: a valid UTF-8 name as before, no Base64 field", ok)
    t.eq(w.invalid(), [], "watch: every event's data is strict JSON")
    w.close()

    # a folder named by pathBase64, include globs on the raw bytes
    folder = W + b"/d\xff"
    w = RawWatch({"pathBase64": b64(folder), "include": ["k?", "*.txt"]})
    ok = w.status == 200 and w.wait(lambda evs: any(e == "watching" for e, _ in evs))
    watching = [d for e, d in w.events if e == "watching"]
    t.ok(ok and watching and watching[0]["path"] == "/workspace/wt/d" + FFFD
         and unb64(watching[0]["pathBase64"]) == folder,
         "watch by pathBase64: watching {path, pathBase64} of that folder", (w.status, w.events[:1]))
    # "k?" is one byte after k: k\xe9 matches; "ké" is two bytes (C3 A9) and does not
    sh("cd /workspace/wt/%s && touch %s %s %s %s" % (q(b"d\xff"), q(b"k\xe9"), q("ké".encode()),
                                                     q(b"x\xfe.txt"), q(b"x\xfe.dat")))
    t.ok(w.find("create", folder + b"/k\xe9") is not None and w.find("create", folder + b"/x\xfe.txt"),
         "watch: include globs match the raw bytes ('k?' matches k\\xe9, '*.txt' matches x\\xfe.txt)")
    time.sleep(0.5)
    with w.cv:
        paths = [(unb64(d["pathBase64"]) if "pathBase64" in d else d["path"].encode())
                 for e, d in w.events if e == "create" and isinstance(d, dict)]
    t.ok(ok and paths and folder + "/ké".encode() not in paths and folder + b"/x\xfe.dat" not in paths,
         "watch: names the globs do not match are not reported ('ké' is 2 bytes for '?')", paths)
    sh("rm -rf /workspace/wt/%s" % q(b"d\xff"))
    end = w.wait(lambda evs: any(e == "stopped" for e, _ in evs))
    st = [d for e, d in w.events if e == "stopped"]
    t.ok(end and st and st[0].get("reason") == "deleted" and unb64(st[0].get("pathBase64", "")) == folder,
         "watch: stopped (deleted) names the folder with pathBase64", st)
    t.eq(w.invalid(), [], "watch by pathBase64: every event's data is strict JSON")
    w.close()


# ---- git checkout: a branch name is bytes too ----------------------------------

def s_git():
    if not shutil.which("git"):
        t.ok(True, "# SKIP git checkout: no git (the sandbox's /usr is the host's)")
        return
    sh("export HOME=/tmp && rm -rf /tmp/gsrc /workspace/gclone && git init -q -b %s /tmp/gsrc && "
       "git -C /tmp/gsrc -c user.email=t@t -c user.name=t commit -q --allow-empty -m one" % q(b"m\xe9"))
    r = srv.post(SB + "/git/checkout", {"repoUrl": "/tmp/gsrc", "targetDir": "gclone"})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j["branch"] == "m" + FFFD
         and unb64(j["branchBase64"]) == b"m\xe9" and j["targetDir"] == "/workspace/gclone"
         and "targetDirBase64" not in j,
         "git checkout of a repo whose branch is not UTF-8: branch with U+FFFD and branchBase64", (r, j))


def s_git_target():
    if not shutil.which("git"):
        t.ok(True, "# SKIP git targetDirBase64: no git")
        return
    sh("export HOME=/tmp && rm -rf /tmp/gsrc2 && git init -q -b main /tmp/gsrc2 && "
       "git -C /tmp/gsrc2 -c user.email=t@t -c user.name=t commit -q --allow-empty -m one")
    raw = b"/workspace/gcl\xe9"
    r = srv.post(SB + "/git/checkout", {"repoUrl": "/tmp/gsrc2", "targetDirBase64": b64(raw)})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and j.get("targetDir") == "/workspace/gcl" + FFFD
         and unb64(j.get("targetDirBase64", "")) == raw,
         "git checkout into targetDirBase64 (a folder name that is not UTF-8): 200, targetDir with "
         "U+FFFD and the exact bytes back", (r, j))
    t.ok(b"gcl\xe9" in (names_in(b"/workspace") or set()),
         "... the clone is in the folder named by those exact bytes")
    r = srv.post(SB + "/git/checkout", {"repoUrl": "/tmp/gsrc2", "targetDir": "/workspace/x",
                                        "targetDirBase64": b64(raw)})
    t.ok(r.status == 400 and strict(r.body)["error"]["code"] == "VALIDATION_FAILED",
         "git checkout with both targetDir and targetDirBase64: 400", r)


# ---- backups of a folder whose own name is not UTF-8 -----------------------------

def s_backup():
    folder = b"/workspace/bk\xff"
    sh("rm -rf %s && mkdir -p %s && printf one > %s/f && printf two > %s/%s"
       % (q(folder), q(folder), q(folder), q(folder), q(b"g\xe9")))
    r = srv.post(SB + "/backups", {"pathBase64": b64(folder), "name": "raw"})
    j = strict(r.body)
    t.ok(r.status == 201 and isinstance(j, dict) and j.get("path") == "/workspace/bk" + FFFD
         and unb64(j.get("pathBase64", "")) == folder and j.get("files", 0) >= 2,
         "backup of a folder given as pathBase64: 201, path with U+FFFD, pathBase64 exact", (r, j))
    if r.status != 201:
        return
    bid = j["id"]
    lst = strict(srv.get(SB + "/backups").body)
    mine = [x for x in lst.get("backups", []) if x.get("id") == bid] if isinstance(lst, dict) else []
    t.ok(len(mine) == 1 and unb64(mine[0].get("pathBase64", "")) == folder,
         "the backup list is strict JSON and gives the folder's exact bytes", lst)
    sh("printf changed > %s/f && rm -f %s/%s" % (q(folder), q(folder), q(b"g\xe9")))
    r = srv.post(SB + "/backups/%s/restore" % bid, {})
    j = strict(r.body)
    t.ok(r.status == 200 and isinstance(j, dict) and unb64(j.get("pathBase64", "")) == folder,
         "restore with no path goes back to the backup's own folder (exact bytes in pathBase64)", (r, j))
    t.eq((cat(folder + b"/f"), cat(folder + b"/g\xe9")), (b"one", b"two"),
         "... and the folder named by those bytes has its files back")
    other = b"/workspace/cp\xfe"
    r = srv.post(SB + "/backups/%s/restore" % bid, {"pathBase64": b64(other)})
    j = strict(r.body)
    t.ok(r.status == 200 and unb64(j.get("pathBase64", "")) == other and cat(other + b"/f") == b"one",
         "restore into another folder given as pathBase64", (r, j))
    r = srv.post(SB + "/backups", {"path": "/workspace/x", "pathBase64": b64(folder)})
    t.ok(r.status == 400 and strict(r.body)["error"]["code"] == "VALIDATION_FAILED",
         "a backup with both path and pathBase64: 400", r)
    srv.delete(SB + "/backups/" + bid)
    sh("rm -rf %s %s" % (q(folder), q(other)))


# ---- error messages and a real HTTP client --------------------------------------

def s_messages():
    r = post("read", {"pathBase64": b64(N + b"/gone\xe9")})
    j = strict(r.body)
    t.ok(r.status == 404 and isinstance(j, dict) and j["error"]["code"] == "FILE_NOT_FOUND"
         and "gone" + FFFD in j["error"]["message"],
         "an error quoting a bad path is strict JSON (U+FFFD in the message)", (r, j))
    # a valid UTF-8 path of 2-byte characters, longer than an error message
    # holds (512 bytes): the message is cut, and never inside a character
    long = "/workspace/n/" + ("é" * 100 + "/") * 3 + "x"
    r = post("read", {"path": long})
    j = strict(r.body)
    t.ok(r.status == 404 and isinstance(j, dict) and j["error"]["message"].startswith("open " + long[:200]),
         "an error message cut at its size limit is still strict JSON", (r, j))


def s_nul():
    """cJSON ends a string at "\\u0000": such a body is refused as a whole,
    never acted on with the string cut (a write to "keep\\u0000.bak" once
    wrote "keep", and text content lost everything after a NUL)."""
    before = names_in(b"/workspace/n")
    r = post("write", {"path": "/workspace/n/keep\x00.bak", "content": "x"})
    j = strict(r.body)
    t.ok(r.status == 400 and j["error"]["code"] == "VALIDATION_FAILED" and "U+0000" in j["error"]["message"],
         "a path holding \\u0000: 400 VALIDATION_FAILED naming U+0000", (r, j))
    t.eq(names_in(b"/workspace/n"), before, "... and nothing was written (no file 'keep')")
    r = post("write", {"path": "/workspace/n/nul.txt", "content": "before\x00after"})
    t.ok(r.status == 400 and cat(b"/workspace/n/nul.txt") is None,
         "text content holding \\u0000: 400, not a file cut at the NUL", r)
    r = post("write", {"path": "/workspace/n/nul.txt", "content": b64(b"before\x00after"), "encoding": "base64"})
    t.ok(r.status == 200 and cat(b"/workspace/n/nul.txt") == b"before\x00after",
         "the same bytes base64-encoded are written whole", r)
    r = srv.post("%s/exec" % SB, {"command": "echo hi\x00; touch /workspace/n/ran"})
    t.ok(r.status == 400 and b"ran" not in (names_in(b"/workspace/n") or set()),
         "an exec command holding \\u0000: 400, nothing runs", r)
    # an escaped backslash followed by u0000 is text, not a NUL
    r = post("write", {"path": "/workspace/n/lit.txt", "content": "a\\u0000b"})
    t.ok(r.status == 200 and cat(b"/workspace/n/lit.txt") == b"a\\u0000b",
         "the text backslash-u0000 (an escaped backslash) is accepted and written as is", r)
    sh("rm -f /workspace/n/nul.txt /workspace/n/lit.txt")


def s_curl():
    url = "http://%s:%d%s/files/list" % (srv.host, srv.port, SB)
    p = subprocess.run("curl -s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' "
                       "-d '{\"path\":\"/workspace/n\",\"recursive\":true}' %s | /usr/bin/python3 -m json.tool"
                       % (srv.token, url), shell=True, capture_output=True, timeout=60)
    out = p.stdout.decode("utf-8", errors="replace")
    t.ok(p.returncode == 0 and "nameBase64" in out and "bad\\ufffd\\ufffd.txt" in out,
         "curl ... files/list | python3 -m json.tool: valid JSON", (p.returncode, p.stderr[-400:], out[:400]))


try:
    t0 = time.time()
    srv.create(SID)
    setup()
    for fn in (s_list, s_one_file, s_changes, s_bad_requests, s_escapes, s_watch, s_git, s_git_target,
               s_backup, s_messages,
               s_nul, s_curl):
        section(fn)
    if os.path.exists(HOST):
        os.unlink(HOST)
finally:
    srv.finish(t, IDS, "server stops cleanly")
print("# %.1f s" % (time.time() - t0))
t.done()
