"""Local worker processes of `midseg batch`: where they come from and how they end.

Part of `midseg.batch`: workers fork from a fork server that has imported midseg
and its stage-1 runtime once (`midseg._preload`), each gets its share of the cores,
and each ends with the batch process, even a killed one (a thread watches the parent).
"""

from __future__ import annotations

import os
import time


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _end_with_parent(parent: int) -> None:
    """Make this worker process end when the batch process `parent` ends, even when killed.

    A worker's own parent is the fork server (POSIX), which outlives a killed batch: a
    thread polls the batch process every half second. Where workers are spawned by the
    batch process itself (no fork server: Windows), a thread joins that parent.
    """
    import threading

    if os.name != "posix":
        import multiprocessing

        parent_process = multiprocessing.parent_process()
        if parent_process is None:
            return

        def watch():
            parent_process.join()
            os._exit(1)

        threading.Thread(target=watch, name="midseg-parent-watch", daemon=True).start()
        return
    if not _alive(parent):
        os._exit(1)

    def poll():
        while _alive(parent):
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=poll, name="midseg-batch-watch", daemon=True).start()


def _init_worker(threads: int, parent: int | None = None) -> None:
    """Each worker process gets its share of the cores, ends with the batch, and prints
    midseg's warnings as one line each (`midseg.errors.show_warnings_as_lines`).

    The share goes to torch when the fork server imported it, and to ONNX Runtime through
    ``OMP_NUM_THREADS``, which `midseg.models` reads when torch is not loaded (and torch
    when a worker imports it later); torch is not imported here for that (about 1 s).
    """
    import sys

    from ..errors import show_warnings_as_lines

    if parent is not None:
        _end_with_parent(parent)
    show_warnings_as_lines("midseg batch")  # as the command prints them, not Python's format
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _close_broken(executor) -> str:
    """Shut a broken one-process pool down; says how its worker ended (exit code when known)."""
    import signal

    try:  # a private attribute: without it, no detail
        processes = list((executor._processes or {}).values())
    except Exception:
        processes = []
    executor.shutdown(wait=True)  # its manager thread collects the exit status first
    codes = [getattr(p, "exitcode", None) for p in processes]
    code = next((c for c in codes if c not in (None, 0)), None)
    if code is None:
        return "it ended abruptly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == getattr(signal, "SIGKILL", 9) else ""
        return f"it was killed by {name}{hint}"
    return f"it exited with status {code}"


def _worker_context(mp):
    """Where worker processes come from: a fork server that has imported midseg, the
    stage-1 runtime and the compiled geodesic kernels once (`midseg._preload`), so that
    each worker starts in milliseconds; "spawn" where there is no fork server (Windows).
    The fork server forks before torch or ONNX Runtime starts a thread, which plain
    "fork" from this process cannot promise."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["midseg._preload"])
        return ctx
    return mp.get_context("spawn")


def _boot_fork_server() -> None:
    """Start the fork server now, so that it imports `midseg._preload` (1-2 s) while this
    process reads the manifest and digests the inputs; the pool started later uses it.
    Nothing happens where there is no fork server."""
    import multiprocessing as mp

    if _worker_context(mp).get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
