"""Comms: the kernel side of comm_open / comm_msg / comm_close.

A small implementation compatible with the ``comm`` package API
(create_comm, get_comm_manager, Comm.send/close/on_msg/on_close); the
Debian python3-comm package's module-level hooks are pointed at it when it
is imported, so libraries built on it (ipywidgets) work.
"""
import json
import uuid

import _cellbox_c


def _dumps(o):
    return json.dumps(o, ensure_ascii=False, default=repr)


class Comm:
    def __init__(self, target_name="", data=None, metadata=None, buffers=None, comm_id=None,
                 primary=True, target_module=None, topic=None, _open_data=None, _close_data=None, **kw):
        self.comm_id = comm_id or uuid.uuid4().hex
        self.target_name = target_name
        self.target_module = target_module
        self.primary = primary
        self._closed = True
        self._msg_callback = None
        self._close_callback = None
        self._close_data = _close_data or {}
        if primary:
            self.open(data if data is not None else (_open_data or {}), metadata, buffers)
        else:
            self._closed = False

    def _publish(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        content = dict(keys, comm_id=self.comm_id, data=data if data is not None else {})
        bufs = [memoryview(b).cast("B") if not isinstance(b, (bytes, bytearray)) else b for b in buffers or []]
        _cellbox_c.publish(msg_type, _dumps(content), bufs or None)

    def open(self, data=None, metadata=None, buffers=None):
        get_comm_manager().register_comm(self)
        self._closed = False
        try:
            self._publish("comm_open", data, metadata, buffers, target_name=self.target_name,
                          target_module=self.target_module)
        except Exception:
            get_comm_manager().unregister_comm(self)
            raise

    def send(self, data=None, metadata=None, buffers=None):
        self._publish("comm_msg", data, metadata, buffers)

    def close(self, data=None, metadata=None, buffers=None, deleting=False):
        if self._closed:
            return
        self._closed = True
        if not deleting:
            self._publish("comm_close", data if data is not None else self._close_data, metadata, buffers)
        get_comm_manager().unregister_comm(self)

    def on_msg(self, callback):
        self._msg_callback = callback

    def on_close(self, callback):
        self._close_callback = callback

    def handle_msg(self, msg):
        if self._msg_callback:
            self._msg_callback(msg)

    def handle_close(self, msg):
        if self._close_callback:
            self._close_callback(msg)

    def __del__(self):
        try:
            self.close(deleting=True)
        except Exception:
            pass


class CommManager:
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
        return {cid: {"target_name": c.target_name} for cid, c in self.comms.items()
                if target_name is None or c.target_name == target_name}

    # messages from the frontend
    def handle(self, msg_type, msg, buffers):
        content = msg.get("content", {})
        msg = dict(msg, buffers=list(buffers))
        comm_id = content.get("comm_id")
        if msg_type == "comm_open":
            target = content.get("target_name")
            f = self.targets.get(target)
            comm = Comm(comm_id=comm_id, primary=False, target_name=target)
            self.register_comm(comm)
            if f is None:
                # unknown target: tell the frontend the comm is closed
                comm._closed = True
                self.unregister_comm(comm)
                comm._publish("comm_close")
                return
            try:
                f(comm, msg)
            except Exception:
                import traceback
                traceback.print_exc()
                comm.close()
        elif msg_type == "comm_msg":
            comm = self.comms.get(comm_id)
            if comm is not None:
                comm.handle_msg(msg)
        elif msg_type == "comm_close":
            comm = self.comms.pop(comm_id, None)
            if comm is not None:
                comm._closed = True
                comm.handle_close(msg)


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
