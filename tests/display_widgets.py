"""Comms and widgets, with this test acting as the frontend.

- Debian's ipywidgets (6.0): the widget version handshake on a comm the
  frontend opens, display(IntSlider()) (comm_open of the models and the
  widget-view display_data), state sent by the "frontend" reaching the
  Python object (observers fire), and kernel-side changes sent back, all
  compared with ipykernel on the same steps;
- the `comm` package API (create_comm, get_comm_manager): comms opened from
  the kernel and from the frontend, binary buffers both ways, close from
  both sides, comm_info by target, an unknown target answered with
  comm_close. Output: TAP.
"""
import time

import display_util as du
import kutil

tap = kutil.TAP()


def drain(kc, parent_id, timeout=10):
    """IOPub messages of one request, up to its idle."""
    out = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=max(0.05, deadline - time.time()))
        except Exception:
            continue
        if m["parent_header"].get("msg_id") != parent_id:
            continue
        if m["msg_type"] == "status":
            if m["content"]["execution_state"] == "idle":
                return out
            continue
        out.append((m["msg_type"], m["content"], m.get("buffers") or []))
    raise TimeoutError("no idle for %s" % parent_id)


def send_comm(kc, msg_type, content, buffers=None):
    msg = kc.session.msg(msg_type, content)
    kc.shell_channel.send(msg) if not buffers else kc.session.send(kc.shell_channel.socket, msg, buffers=buffers)
    return drain(kc, msg["header"]["msg_id"])


def split(out):
    """(outputs, comm messages): their relative order is not meaningful to a
    frontend (ipykernel flushes stdout/stderr before outputs, not comms)."""
    outputs = [(t, c, b) for t, c, b in out if not t.startswith("comm_")]
    comms = [(t, c, b) for t, c, b in out if t.startswith("comm_")]
    return du.merge_streams(outputs), comms


def widget_session(kernel):
    """The same frontend steps against one kernel -> list of (step, outputs, comms, extra)."""
    km, kc = du.start(kernel)
    steps = []
    try:
        r, out = du.collect(kc, "import ipywidgets as w\nchanges = []")
        steps.append(("import ipywidgets", *split(out), r["status"]))
        # display before the handshake: the frontend has not said it has the widget JavaScript
        r, out = du.collect(kc, "s0 = w.IntSlider(value=1)\ndisplay(s0)")
        steps.append(("display without the frontend handshake", *split(out), r["status"]))
        # the frontend opens the version comm, gets the version, validates
        vid = "versioncomm0001"
        out = send_comm(kc, "comm_open", {"comm_id": vid, "target_name": "jupyter.widget.version", "data": {}})
        steps.append(("frontend opens jupyter.widget.version", *split(out), None))
        out = send_comm(kc, "comm_msg", {"comm_id": vid, "data": {"validated": True}})
        steps.append(("frontend validates the version", *split(out), None))
        r, out = du.collect(kc, "s = w.IntSlider(value=3, min=0, max=10, description='n')\n"
                                "s.observe(lambda ch: changes.append((ch['old'], ch['new'])), names='value')\n"
                                "display(s)\ns.model_id")
        model = [c for t, c, b in out if t == "execute_result"][0]["data"]["text/plain"].strip("'")
        steps.append(("display(IntSlider())", *split(out), r["status"]))
        # the frontend moves the slider
        out = send_comm(kc, "comm_msg", {"comm_id": model, "data": {"method": "backbone", "sync_data": {"value": 7}}})
        steps.append(("frontend sets value=7", *split(out), None))
        r, out = du.collect(kc, "print(s.value, changes)")
        steps.append(("kernel sees the new value, observer fired", *split(out), r["status"]))
        # the kernel changes it: an update goes to the frontend
        r, out = du.collect(kc, "s.value = 9")
        steps.append(("kernel sets value=9", *split(out), r["status"]))
        out = send_comm(kc, "comm_msg", {"comm_id": model, "data": {"method": "request_state"}})
        steps.append(("frontend requests the state", *split(out), None))
        # comm_info lists the widget comms
        msg = kc.session.msg("comm_info_request", {"target_name": "jupyter.widget"})
        kc.shell_channel.send(msg)
        reply = kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
            reply = kc.get_shell_msg(timeout=10)
        comms = reply["content"]["comms"]
        steps.append(("comm_info by target", [("info", {"n": len(comms), "has_model": model in comms,
                                                         "targets": sorted({v["target_name"] for v in comms.values()})},
                                               [])], [], reply["content"]["status"]))
        # ipywidgets' documented asynchronous pattern: a task awaits the next change of the
        # widget; the frontend's update arrives between cells and the task goes on
        r, out = du.collect(kc, "import asyncio\ngot = []\ndef next_change(widget, name):\n"
                                "    fut = asyncio.Future()\n"
                                "    def on(change):\n        fut.set_result(change.new)\n"
                                "        widget.unobserve(on, name)\n"
                                "    widget.observe(on, name)\n    return fut\n"
                                "async def follow():\n    for i in range(2):\n"
                                "        got.append(await next_change(s, 'value'))\n"
                                "task = asyncio.ensure_future(follow())")
        steps.append(("a task awaits the slider's next change", *split(out), r["status"]))
        for v in (4, 5):
            send_comm(kc, "comm_msg", {"comm_id": model, "data": {"method": "backbone", "sync_data": {"value": v}}})
            time.sleep(0.3)
        r, out = du.collect(kc, "print(got, task.done())")
        steps.append(("the task saw both changes from the frontend", *split(out), r["status"]))
        r, out = du.collect(kc, "s.close()")
        steps.append(("widget closed from the kernel", *split(out), r["status"]))
        return steps
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours = widget_session("cellbox")
theirs = widget_session("python3")
for a, b in zip(ours, theirs):
    n1, n2 = du.Normalizer(), du.Normalizer()
    o1, o2 = n1.messages(a[1]), n2.messages(b[1])
    c1, c2 = n1.messages(a[2]), n2.messages(b[2])
    diag = "outputs cellbox   %s\noutputs ipykernel %s\ncomms cellbox   %s\ncomms ipykernel %s" % (o1, o2, c1, c2)
    tap.ok(o1 == o2 and c1 == c2 and a[3] == b[3], "widgets, same messages as ipykernel: %s" % a[0], diag)

step = dict((s[0], s) for s in ours)
opened = [c for t, c, b in step["display(IntSlider())"][2] if t == "comm_open"]
tap.ok(len(opened) == 3 and all(c["target_name"] == "jupyter.widget" for c in opened)
       and opened[-1]["data"]["_model_name"] == "IntSliderModel" and opened[-1]["data"]["value"] == 3,
       "display(IntSlider()): comm_open of the layout, style and slider models", opened)
views = [c for t, c, b in step["display(IntSlider())"][1] if t == "display_data"]
tap.ok(len(views) == 1 and views[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == opened[-1]["comm_id"],
       "display(IntSlider()): a widget-view display_data for the slider model", views)
seen = "".join(c["text"] for t, c, b in step["kernel sees the new value, observer fired"][1] if t == "stream")
tap.eq(seen, "7 [(3, 7)]\n", "a value sent by the frontend reaches the Python object and its observer")
upd = [c["data"] for t, c, b in step["kernel sets value=9"][2] if t == "comm_msg"]
tap.ok(upd and upd[0].get("method") == "update" and upd[0]["state"] == {"value": 9},
       "a value set in the kernel is sent to the frontend", upd)
ver = [c["data"] for t, c, b in step["frontend opens jupyter.widget.version"][2] if t == "comm_msg"]
tap.ok(ver and "version" in ver[0], "the version comm opened by the frontend answers with the version", ver)
warn = [c for t, c, b in step["display(IntSlider())"][1] if t == "stream"]
tap.eq(warn, [], "after the handshake, no 'Widget Javascript not detected' warning")

# -- the comm package: cellbox only (Debian's ipykernel 6.17 predates it)
km, kc = du.start("cellbox")
try:
    r, out = du.collect(kc, """import comm
got = []
def on_open(c, msg):
    got.append(('open', msg['content']['data'], [bytes(b) for b in msg['buffers']]))
    c.on_msg(lambda m: (got.append(('msg', m['content']['data'], [bytes(b) for b in m['buffers']])),
                        c.send({'echo': m['content']['data']}, buffers=[b'back', memoryview(b'\\x00\\x01\\x02')])))
    c.on_close(lambda m: got.append(('close', m['content']['data'])))
comm.get_comm_manager().register_target('test.echo', on_open)
k = comm.create_comm(target_name='test.kernel', data={'hello': 1}, buffers=[b'abc'])
k.send({'x': 2}, buffers=[bytearray(b'12345')])
k.comm_id""")
    kid = [c for t, c, b in out if t == "execute_result"][0]["data"]["text/plain"].strip("'")
    opens = [(c, b) for t, c, b in out if t == "comm_open"]
    msgs = [(c, b) for t, c, b in out if t == "comm_msg"]
    tap.ok(len(opens) == 1 and opens[0][0]["target_name"] == "test.kernel" and opens[0][0]["data"] == {"hello": 1}
           and [bytes(x) for x in opens[0][1]] == [b"abc"], "comm.create_comm opens a comm from the kernel, with a buffer",
           opens)
    tap.ok(len(msgs) == 1 and msgs[0][0]["data"] == {"x": 2} and [bytes(x) for x in msgs[0][1]] == [b"12345"],
           "Comm.send with a binary buffer", msgs)
    out = send_comm(kc, "comm_open", {"comm_id": "fe01", "target_name": "test.echo", "data": {"q": 1}}, buffers=[b"in"])
    tap.eq([t for t, c, b in out], [], "a frontend opens a comm on a registered target (no reply message)")
    out = send_comm(kc, "comm_msg", {"comm_id": "fe01", "data": {"ping": 3}}, buffers=[b"\xff\xfe"])
    back = [(c, b) for t, c, b in out if t == "comm_msg"]
    tap.ok(len(back) == 1 and back[0][0]["data"] == {"echo": {"ping": 3}}
           and [bytes(x) for x in back[0][1]] == [b"back", b"\x00\x01\x02"],
           "frontend comm_msg with a buffer reaches on_msg; the reply carries two buffers", back)
    out = send_comm(kc, "comm_close", {"comm_id": "fe01", "data": {"bye": True}})
    r, out = du.collect(kc, "got")
    tap.eq([c for t, c, b in out if t == "execute_result"][0]["data"]["text/plain"],
           "[('open', {'q': 1}, [b'in']),\n ('msg', {'ping': 3}, [b'\\xff\\xfe']),\n ('close', {'bye': True})]",
           "the kernel side saw the open, the message and the close, with their buffers")
    out = send_comm(kc, "comm_open", {"comm_id": "fe02", "target_name": "no.such.target", "data": {}})
    tap.eq([(t, c["comm_id"]) for t, c, b in out], [("comm_close", "fe02")], "an unknown target is answered with comm_close")
    msg = kc.session.msg("comm_info_request", {})
    kc.shell_channel.send(msg)
    reply = kc.get_shell_msg(timeout=10)
    tap.eq(reply["content"]["comms"], {kid: {"target_name": "test.kernel"}},
           "comm_info lists the open comms (the closed ones are gone)")
    msg = kc.session.msg("comm_info_request", {"target_name": "other"})
    kc.shell_channel.send(msg)
    tap.eq(kc.get_shell_msg(timeout=10)["content"]["comms"], {}, "comm_info filters by target")
    r, out = du.collect(kc, "k.close({'done': 1})")
    tap.ok([(t, c["data"]) for t, c, b in out] == [("comm_close", {"done": 1})], "Comm.close from the kernel", out)
    r, out = du.collect(kc, "from ipykernel.comm import Comm as IC\nc2 = IC(target_name='legacy', data={'a': 1})\n"
                            "isinstance(c2, IC), c2.kernel is not None")
    tap.ok([t for t, c, b in out] == ["comm_open", "execute_result"] and
           [c for t, c, b in out][1]["data"]["text/plain"] == "(True, True)",
           "ipykernel.comm.Comm (what ipywidgets imports) publishes through cellbox", out)
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    del kc, km
