"""tests/sandbox_meta.py: sandbox metadata and list filters (E2B's
`metadata` on create, `list({query: {metadata, state}})`), with the real
server and real sandboxes.

metadata: an object of up to 64 strings given at creation, shown in
`options.metadata`, kept over a restart, copied by a fork.
GET /v1/sandboxes?metadata=<URL-encoded k=v&k2=v2>&state=running,paused,stopped.
Prints TAP.
"""
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

srv = Server()
IDS = ["md-a", "md-b", "md-c", "md-fork"]


def listed(**query):
    """Ids the list gives for a filter; metadata is a dict, encoded as E2B's
    SDK does (a query string, URL-encoded as one parameter)."""
    q = {}
    if "metadata" in query:
        q["metadata"] = urllib.parse.urlencode(query["metadata"])
    if "state" in query:
        q["state"] = query["state"]
    r = srv.get("/v1/sandboxes" + ("?" + urllib.parse.urlencode(q) if q else ""))
    if r.status != 200:
        return r
    return sorted(b["id"] for b in r.json()["sandboxes"] if b["id"] in IDS)


try:
    # ---- validation ---------------------------------------------------------------
    bad = [("x", "object"), ({"a": 5}, "'a'"), ({"": "v"}, "key"), ({"k" * 129: "v"}, "key"),
           ({"a\nb": "v"}, "key"), ({"a": "v" * 1025}, "'a'"), ({"k%d" % i: "v" for i in range(65)}, "64")]
    wrong = []
    for md, word in bad:
        r = srv.put("/v1/sandboxes/md-bad", {"metadata": md})
        if r.status != 400 or r.code != "VALIDATION_FAILED" or word not in r.json()["error"]["message"]:
            wrong.append((str(md)[:60], r))
    t.ok(not wrong, "bad metadata (not an object, a number, empty/long/control-character keys, a long "
         "value, 65 keys): 400 VALIDATION_FAILED naming it", wrong)
    t.eq(srv.get("/v1/sandboxes/md-bad").status, 404, "... and no sandbox was made")

    # ---- create, show ----------------------------------------------------------------
    odd = "a b&c=d/é"
    r = srv.put("/v1/sandboxes/md-a", {"metadata": {"userId": "u1", "env": "dev", "odd": odd}})
    t.ok(r.status == 201 and r.json()["options"]["metadata"] == {"userId": "u1", "env": "dev", "odd": odd},
         "metadata given at creation is shown in options.metadata, exactly", r)
    srv.create("md-b", metadata={"userId": "u2", "env": "dev"}, instanceType="standard")
    srv.create("md-c")
    t.eq(srv.get("/v1/sandboxes/md-c").json()["options"].get("metadata"), {},
         "a sandbox without metadata shows an empty object")

    # ---- filters -------------------------------------------------------------------------
    t.eq(listed(metadata={"userId": "u1"}), ["md-a"], "?metadata=userId=u1 gives only that sandbox")
    t.eq(listed(metadata={"env": "dev"}), ["md-a", "md-b"], "?metadata=env=dev gives both")
    t.eq(listed(metadata={"env": "dev", "userId": "u2"}), ["md-b"], "two pairs: both must match")
    t.eq(listed(metadata={"odd": odd}), ["md-a"], "a value with spaces, & and = and non-ASCII, encoded as "
         "E2B's SDK does, matches")
    t.eq(listed(metadata={"userId": "nobody"}), [], "no match: an empty list")
    t.eq(listed(), ["md-a", "md-b", "md-c"], "no filter: every sandbox")
    r = srv.get("/v1/sandboxes?metadata=justakey")
    t.ok(r.status == 400 and "key=value" in r.json()["error"]["message"], "a filter that is not key=value: 400", r)
    srv.sh("md-a", "true")
    srv.post("/v1/sandboxes/md-b/pause")
    paused = srv.get("/v1/sandboxes/md-b").json()["status"] == "paused"
    running = listed(state="running")
    t.ok(running == ["md-a", "md-c"] if paused else running == ["md-a", "md-b", "md-c"],
         "?state=running keeps the running ones (creation starts a sandbox), not the paused one", running)
    if paused:
        t.eq(listed(state="paused"), ["md-b"], "?state=paused keeps the paused one")
    else:
        t.ok(True, "# SKIP pause is not supported here")
    t.eq(listed(state="running,paused", metadata={"env": "dev"}), ["md-a", "md-b"] if paused else ["md-a"],
         "state and metadata filters together")
    r = srv.get("/v1/sandboxes?state=sleeping")
    t.ok(r.status == 400 and "sleeping" in r.json()["error"]["message"], "an unknown state: 400 naming it", r)
    srv.post("/v1/sandboxes/md-b/resume")

    # ---- fork, restart ---------------------------------------------------------------------
    r = srv.post("/v1/sandboxes/md-a/fork", {"id": "md-fork"})
    t.ok(r.status in (200, 201) and r.json()["options"]["metadata"]["userId"] == "u1",
         "a fork has the source's metadata", r)
    t.eq(srv.stop(), 0, "graceful stop")
    srv.start()
    t.eq(listed(metadata={"userId": "u1"}), ["md-a", "md-fork"], "metadata survives a restart; filters work after it")
    t.eq(listed(state="stopped"), ["md-a", "md-b", "md-c", "md-fork"], "after a restart every sandbox is stopped")
    t.eq([srv.get("/v1/sandboxes/" + i).json()["options"]["instanceType"] for i in ("md-a", "md-b")],
         ["lite", "standard"], "instanceType reads back as given after a restart (was 'custom' for every sandbox)")
finally:
    srv.finish(t, IDS, "server stops cleanly")
t.done()
