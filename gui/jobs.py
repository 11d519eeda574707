"""Runs session calls off the UI thread, one at a time, and reports back by signal.

`JobRunner.submit(fn, on_done)` calls ``fn()`` on a worker thread; the result
or the exception comes back on the UI thread. It must not touch widgets from
the worker, and never runs two jobs at once (a Session is not thread-safe).
"""

from __future__ import annotations

import time
import traceback
from typing import Any, Callable

from PyQt5.QtCore import QObject, QRunnable, QThreadPool, pyqtSignal, pyqtSlot

__all__ = ["JobRunner"]


class _Signals(QObject):
    finished = pyqtSignal(object, object, float)  # result, exception or None, wall seconds


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any]):
        super().__init__()
        self.fn = fn
        self.signals = _Signals()
        # Python owns the job (kept by JobRunner until the worker has surely left run()).
        self.setAutoDelete(False)

    def run(self) -> None:
        t0 = time.perf_counter()
        try:
            result, error = self.fn(), None
        except BaseException as exc:  # reported to the UI, never lost in the worker
            exc.__midseg_traceback__ = traceback.format_exc()
            result, error = None, exc
        self.fn = None
        self.signals.finished.emit(result, error, time.perf_counter() - t0)


class JobRunner(QObject):
    """A single worker thread for session calls.

    Signals
    -------
    busy_changed(bool)
        True when a job starts, False when it has finished and its callback ran.
    """

    busy_changed = pyqtSignal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._job: _Job | None = None
        self._previous: _Job | None = None
        self._on_done = None
        self.label = ""

    @property
    def busy(self) -> bool:
        return self._job is not None

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any, BaseException | None, float], None],
        label: str = "",
    ) -> bool:
        """Run ``fn()`` in the worker; ``on_done(result, error, seconds)`` runs on the UI thread.

        Returns False (and runs nothing) when a job is already running.
        """
        if self._job is not None:
            return False
        # the previous job emitted its result as its last act: let its thread return from
        # run() before the Python object (and its C++ runnable) may be collected
        self._pool.waitForDone(2000)
        self._previous = None
        job = _Job(fn)
        # a bound slot of this (UI-thread) object: the result is queued to the UI thread
        job.signals.finished.connect(self._finished)
        self._job, self._on_done, self.label = job, on_done, label
        self.busy_changed.emit(True)
        self._pool.start(job)
        return True

    @pyqtSlot(object, object, float)
    def _finished(self, result, error, seconds) -> None:
        on_done = self._on_done
        self._previous, self._job, self._on_done, self.label = self._job, None, None, ""
        try:
            on_done(result, error, seconds)
        finally:
            self.busy_changed.emit(False)

    def wait(self, msecs: int = -1) -> bool:
        """Block until the worker thread is idle (shutdown); True if it is."""
        return self._pool.waitForDone(msecs)
