"""Comms: the kernel side of comm_open / comm_msg / comm_close.

One CommManager per kernel holds the open comms (by id) and the targets
(by name). Comms opened by the kernel publish comm_open on IOPub; comms
opened by the frontend arrive through Shell.comm_message -> handle(). An
open request for an unknown target is answered with comm_close.

Libraries reach this module through the APIs they were written for; the
adapters are installed when those modules are imported (cellbox._hooks):

- the ``comm`` package (Debian's python3-comm): ``comm.create_comm`` and
  ``comm.get_comm_manager`` return ours;
- ``ipykernel.comm`` (what Debian's ipywidgets 6 imports): its ``Comm`` and
  ``CommManager`` names are ours, so widgets open their comms here;
- ``get_ipython().kernel.comm_manager`` (cellbox._ipython).

Message callbacks run between the shell's pre/post-execute hooks, as in
ipykernel, so a figure drawn by a widget callback is shown.
"""
import json
import sys
import uuid

import _cellbox_c

__all__ = ["Comm", "CommManager", "create_comm", "get_comm_manager"]


def _dumps(obj):
    from cellbox.display import dumps
    return dumps(obj)


def _buffers(buffers):
    if not buffers:
        return None
    out = []
    for b in buffers:
        if isinstance(b, (bytes, bytearray)):
            out.append(b)
        else:
            m = memoryview(b)
            out.append(m if m.contiguous and m.format == "B" else m.cast("B") if m.contiguous else m.tobytes())
    return out


class Comm:
    """One end of a comm (the API of comm.base_comm.BaseComm / ipykernel's Comm)."""

    def __init__(self, target_name="comm", data=None, metadata=None, buffers=None, comm_id=None,
                 primary=True, target_module=None, topic=None, _open_data=None, _close_data=None, **kwargs):
        self.comm_id = comm_id if comm_id else uuid.uuid4().hex
        self.primary = primary
        self.target_name = target_name
        self.target_module = target_module
        self.topic = topic if topic else ("comm-%s" % self.comm_id).encode("ascii")
        self._open_data = _open_data if _open_data else {}
        self._close_data = _close_data if _close_data else {}
        self._msg_callback = None
        self._close_callback = None
        self._closed = True
        if kwargs.get("kernel") is not None:
            self.kernel = kwargs["kernel"]
        if self.primary:
            self.open(data=data, metadata=metadata, buffers=buffers)
        else:
            self._closed = False

    @property
    def kernel(self):
        # ipywidgets only sends while comm.kernel is not None
        from cellbox._ipython import get_kernel
        return get_kernel()

    @kernel.setter
    def kernel(self, value):
        pass

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        content = dict(data=data if data is not None else {}, comm_id=self.comm_id, **keys)
        _cellbox_c.publish(msg_type, _dumps(content), _buffers(buffers))

    _publish_msg = publish_msg

    def open(self, data=None, metadata=None, buffers=None):
        if data is None:
            data = self._open_data
        manager = get_comm_manager()
        manager.register_comm(self)
        try:
            self.publish_msg("comm_open", data=data, metadata=metadata, buffers=buffers,
                             target_name=self.target_name, target_module=self.target_module)
            self._closed = False
        except Exception:
            manager.unregister_comm(self)
            raise

    def close(self, data=None, metadata=None, buffers=None, deleting=False):
        if self._closed:
            return
        self._closed = True
        if data is None:
            data = self._close_data
        try:
            self.publish_msg("comm_close", data=data, metadata=metadata, buffers=buffers)
        finally:
            if not deleting:
                get_comm_manager().unregister_comm(self)

    def send(self, data=None, metadata=None, buffers=None):
        self.publish_msg("comm_msg", data=data, metadata=metadata, buffers=buffers)

    def on_close(self, callback):
        self._close_callback = callback

    def on_msg(self, callback):
        self._msg_callback = callback

    def handle_close(self, msg):
        if self._close_callback:
            self._close_callback(msg)

    def handle_msg(self, msg):
        if self._msg_callback:
            _around_execute(self._msg_callback, msg)

    def __del__(self):
        try:
            self.close(deleting=True)
        except Exception:
            pass


def _around_execute(fn, *args):
    """fn(*args) between the shell's pre and post execute hooks."""
    from cellbox import _kernel
    shell = _kernel._shell
    if shell is not None:
        for hook in list(shell.pre_execute):
            hook()
    try:
        fn(*args)
    finally:
        if shell is not None:
            for hook in list(shell.post_execute):
                hook()


class CommManager:
    """The open comms and the registered targets."""

    def __init__(self):
        self.comms = {}
        self.targets = {}

    def register_target(self, target_name, f):
        if isinstance(f, str):
            import importlib
            mod, _, attr = f.rpartition(".")
            f = getattr(importlib.import_module(mod), attr)
        self.targets[target_name] = f

    def unregister_target(self, target_name, f=None):
        return self.targets.pop(target_name, None)

    def register_comm(self, comm):
        self.comms[comm.comm_id] = comm
        return comm.comm_id

    def unregister_comm(self, comm):
        return self.comms.pop(comm.comm_id, None)

    def get_comm(self, comm_id):
        return self.comms.get(comm_id)

    def info(self, target_name=None):
        """comm_info_reply's comms: {comm_id: {target_name}} of the open comms."""
        return {cid: {"target_name": c.target_name} for cid, c in list(self.comms.items())
                if not target_name or c.target_name == target_name}

    # -- messages from the frontend (ipykernel's handler names take (stream, ident, msg))
    def comm_open(self, stream, ident, msg):
        self.handle("comm_open", msg, msg.get("buffers") or [])

    def comm_msg(self, stream, ident, msg):
        self.handle("comm_msg", msg, msg.get("buffers") or [])

    def comm_close(self, stream, ident, msg):
        self.handle("comm_close", msg, msg.get("buffers") or [])

    def handle(self, msg_type, msg, buffers):
        from cellbox import _ipython
        saved = _ipython._comm_parent
        if msg.get("header"):
            _ipython._comm_parent = {"header": msg["header"]}
        try:
            self._handle(msg_type, msg, buffers)
        finally:
            _ipython._comm_parent = saved

    def _handle(self, msg_type, msg, buffers):
        content = msg.get("content") or {}
        msg = dict(msg, buffers=list(buffers))
        comm_id = content.get("comm_id")
        if msg_type == "comm_open":
            target = content.get("target_name")
            f = self.targets.get(target)
            comm = create_comm(comm_id=comm_id, primary=False, target_name=target)
            self.register_comm(comm)
            if f is None:
                comm.close()  # tells the frontend the comm is gone
                return
            try:
                f(comm, msg)
            except Exception:
                _report("opening a comm with target %r" % target)
                try:
                    comm.close()
                except Exception:
                    pass
        elif msg_type == "comm_msg":
            comm = self.comms.get(comm_id)
            if comm is None:
                return
            try:
                comm.handle_msg(msg)
            except Exception:
                _report("comm_msg for %s" % comm_id)
        elif msg_type == "comm_close":
            comm = self.comms.pop(comm_id, None)
            if comm is None:
                return
            comm._closed = True
            try:
                comm.handle_close(msg)
            except Exception:
                _report("comm_close for %s" % comm_id)


def _report(what):
    """An exception in a comm callback: shown like an error in a cell."""
    from cellbox import _ipython
    sys.stderr.write("[cellbox] exception in %s\n" % what)
    _ipython.show_exception()


_manager = None


def get_comm_manager():
    global _manager
    if _manager is None:
        _manager = CommManager()
        from cellbox import _kernel
        if _kernel._shell is not None:
            _kernel._shell.comms = _manager
    return _manager


def create_comm(*args, **kwargs):
    return Comm(*args, **kwargs)


# -- adapters -----------------------------------------------------------------------

def patch_comm_package(mod):
    """The ``comm`` package: comms are created and managed here."""
    mod.create_comm = create_comm
    mod.get_comm_manager = get_comm_manager


def patch_ipykernel_comm(mod):
    """``ipykernel.comm``: Comm and CommManager are ours."""
    mod.Comm = Comm
    mod.CommManager = CommManager
    for sub in ("ipykernel.comm.comm", "ipykernel.comm.manager"):
        m = sys.modules.get(sub)
        if m is not None:
            if hasattr(m, "Comm"):
                m.Comm = Comm
            if hasattr(m, "CommManager"):
                m.CommManager = CommManager
