"""The kernel's asyncio event loop, as under ipykernel.

ipykernel runs every request inside its asyncio loop, and notebooks written
for Jupyter rely on it: in any cell asyncio.get_running_loop() works,
asyncio.create_task() schedules a task, loop.is_running() is true (so
asyncio.run() and loop.run_until_complete() refuse, as there), and the tasks
a cell leaves behind go on running between cells and during a later
top-level await.

cellbox does the same without importing asyncio before the notebook does
(that would cost 30 ms of start-up): the loop is made right after the first
import of asyncio (_cellbox_boot.when_imported). From there a cell (or a comm
handler) runs with the loop marked as running on this thread, which is what
run_forever() itself does before it runs a callback; a cell's top-level
awaits run on the loop; and between requests the kernel core gives the loop
its turns (background(): the timeout of the loop's next timer and its
selector's fd go into the kernel's poll, so a timer, a socket or
call_soon_threadsafe() wakes it, and an idle loop costs nothing).

Ownership: the loop is the one asyncio's policy holds for this thread; a
notebook may replace it (set_event_loop) or close it, and the next request
picks up whatever is current then.
"""
import _thread
import sys

_main = _thread.get_ident()   # the interp thread (this module is imported there)
_loop = None                  # the loop, once asyncio is imported
_active = False               # a cell or a comm handler is running
_entered = None               # (loop, previous running loop, asyncgen hooks) while marked running


def install():
    """At kernel start: make the loop when asyncio is imported (now if it is)."""
    from _cellbox_boot import when_imported
    when_imported("asyncio", lambda module: _setup())


def _current():
    """The loop asyncio's policy holds for this thread, made when there is
    none (or it was closed)."""
    import asyncio
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:   # set_event_loop(None) was called
        loop = None
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
    return loop


def _setup():
    global _loop
    if _thread.get_ident() != _main:
        return   # another thread imported asyncio first: made at the next request
    _loop = _current()
    if _active:
        _enter()


def _enter():
    """Mark the loop as running on this thread, as run_forever() does."""
    global _loop, _entered
    if _entered is not None:
        return
    from asyncio import events, base_events
    loop = _loop = _current()
    if loop.is_running():
        return   # someone runs it already (a nested run): leave it alone
    _entered = (loop, events._get_running_loop(), sys.get_asyncgen_hooks())
    events._set_running_loop(loop)
    if isinstance(loop, base_events.BaseEventLoop):
        loop._thread_id = _thread.get_ident()
        sys.set_asyncgen_hooks(firstiter=loop._asyncgen_firstiter_hook,
                               finalizer=loop._asyncgen_finalizer_hook)


def _leave():
    global _entered
    if _entered is None:
        return
    loop, previous, hooks = _entered
    _entered = None
    from asyncio import events, base_events
    if isinstance(loop, base_events.BaseEventLoop) and loop._thread_id == _thread.get_ident():
        loop._thread_id = None
    events._set_running_loop(previous)
    sys.set_asyncgen_hooks(*hooks)


def request_start():
    """A cell or a comm handler begins."""
    global _active
    _active = True
    if _loop is not None or ("asyncio" in sys.modules and _thread.get_ident() == _main):
        _enter()


def request_end():
    global _active
    _active = False
    _leave()


def run(coro):
    """Run a cell's top-level await on the loop (marked running again
    afterwards). Interrupted, its task is cancelled rather than left to go
    on between cells."""
    import asyncio
    was = _entered is not None
    _leave()
    loop = _current()
    task = asyncio.ensure_future(coro, loop=loop)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():
            task.cancel()
            try:
                loop.run_until_complete(task)
            except BaseException:
                pass
        raise
    finally:
        if was or _active:
            _enter()


def background(run):
    """The kernel core between requests: with run, give the loop one turn
    (the callbacks due now); then -> (ms until the loop needs a turn or -1,
    its selector's fd or -1)."""
    loop = _loop
    if loop is None or _entered is not None or loop.is_closed() or loop.is_running():
        return -1, -1
    if run:
        try:
            loop.call_soon(loop.stop)
            loop.run_forever()
        except KeyboardInterrupt:
            pass   # an interrupt while idle interrupts nothing, as in ipykernel
        except BaseException:
            import traceback
            traceback.print_exc()
    ready = getattr(loop, "_ready", None)
    scheduled = getattr(loop, "_scheduled", None)
    if ready is None or scheduled is None:
        return 10, -1   # another loop type (uvloop...): look every 10 ms
    if ready:
        timeout = 0
    elif scheduled:
        timeout = int(max(0.0, scheduled[0].when() - loop.time()) * 1000) + 1
    else:
        timeout = -1
    selector = getattr(loop, "_selector", None)
    try:
        fd = selector.fileno() if selector is not None else -1
    except Exception:
        fd = -1
    return min(timeout, 2 ** 31 - 1), fd
