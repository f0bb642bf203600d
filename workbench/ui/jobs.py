"""Background jobs for the dashboard: work in a thread, results as events on a queue.

The worker never touches widgets or plots.  It calls ``emit(event)`` (a plain dict) and checks
``stop_requested()`` between units of work; the session's periodic callback calls ``drain()`` on
the server's event loop and applies the events to its streams/parameters.  This is the pattern
Panel documents for threads: direct cross-thread updates of Bokeh models lose data.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
import weakref
from collections.abc import Callable

import param

from workbench.errors import UserInputError

JobFn = Callable[[Callable[[dict], None], Callable[[], bool]], None]

#: Server-wide cap on jobs computing at once (all sessions together); more wait as "queued".
#: Each job uses all cores through XLA, so on a small machine more than one or two only slow all down.
MAX_CONCURRENT_JOBS = int(os.environ.get("WORKBENCH_MAX_JOBS", "2"))
_SLOTS = threading.BoundedSemaphore(MAX_CONCURRENT_JOBS)
_JOBS: weakref.WeakSet = weakref.WeakSet()


def running_jobs() -> int:
    """Jobs of all sessions whose threads are alive (computing or queued)."""
    return sum(job.running for job in list(_JOBS))


class JobStopped(Exception):
    """Raised inside a job (e.g. from a progress callback) to end it early on a stop request."""


def stopping_progress(emit: Callable[[dict], None], stop_requested: Callable[[], bool]):
    """A ``progress(done, total, stage)`` callback that emits progress events and raises
    :class:`JobStopped` once a stop was requested (for work that only reports progress)."""

    def progress(done, total, stage):
        emit({"kind": "progress", "percent": int(100 * done / max(total, 1)), "stage": stage})
        if stop_requested():
            raise JobStopped

    return progress


class BackgroundJob:
    """Run ``fn(emit, stop_requested)`` in a daemon thread.

    Events: ``{"kind": "queued"}`` first when all server-wide slots are taken (the job waits for one),
    whatever ``fn`` emits, then exactly one final ``{"kind": "finished"}``, ``{"kind": "stopped"}`` or
    ``{"kind": "error", "message": ...}`` (user-input errors keep their message; unexpected errors are
    summarised in one line and the traceback kept in ``detail``).
    """

    def __init__(self, fn: JobFn, name: str = "job"):
        self._fn = fn
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BackgroundJob:
        _JOBS.add(self)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def drain(self) -> list[dict]:
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def _run(self) -> None:
        if not _SLOTS.acquire(blocking=False):
            self._queue.put({"kind": "queued", "message": f"queued: the server runs at most "
                                                          f"{MAX_CONCURRENT_JOBS} jobs at once"})
            while not _SLOTS.acquire(timeout=0.2):
                if self._stop.is_set():
                    self._queue.put({"kind": "stopped"})
                    return
        try:
            self._work()
        finally:
            _SLOTS.release()

    def _work(self) -> None:
        try:
            self._fn(self._queue.put, self._stop.is_set)
        except JobStopped:
            self._queue.put({"kind": "stopped"})
        except UserInputError as err:
            self._queue.put({"kind": "error", "message": str(err)})
        except Exception as err:  # reported to the UI as one line, never a traceback on screen
            self._queue.put({"kind": "error", "message": f"{type(err).__name__}: {err}",
                             "detail": traceback.format_exc()})
        else:
            self._queue.put({"kind": "stopped" if self._stop.is_set() else "finished"})


class JobState(param.Parameterized):
    """A session state that runs one ``BackgroundJob`` at a time and applies its events.

    ``poll()`` (the page's periodic callback) handles the events every job emits — ``progress``
    (``percent``, optional ``stage``), ``status``/``queued`` (``message``) and the final
    ``finished``/``stopped``/``error`` — and passes any other kind to ``on_event``; ``on_end``
    sets the closing status.  Subclasses call ``launch(work, name, status)`` from ``start()``.
    """

    status = param.String("ready")
    progress = param.Integer(0, bounds=(0, 100))
    running = param.Boolean(False)

    #: status shown after ``stop()`` until the job has stopped
    stopping_message = "stopping …"

    def __init__(self, **params):
        super().__init__(**params)
        self._job: BackgroundJob | None = None

    def launch(self, work: JobFn, name: str, status: str) -> None:
        self.running, self.progress, self.status = True, 0, status
        self._job = BackgroundJob(work, name=name).start()

    def stop(self) -> None:
        if self._job is not None and self.running:
            self._job.stop()
            self.status = self.stopping_message

    def poll(self) -> None:
        """Apply pending job events (call on the server's event loop only)."""
        if self._job is None:
            return
        for event in self._job.drain():
            kind = event["kind"]
            if kind == "progress":
                self.progress = event["percent"]
                if "stage" in event:
                    self.status = f"{event['stage']}: {event['percent']} %"
            elif kind in ("status", "queued"):
                self.status = event["message"]
            elif kind in ("finished", "stopped", "error"):
                self.running = False
                self.on_end(kind, event)
            else:
                self.on_event(event)

    def on_event(self, event: dict) -> None:
        """A job-specific event (e.g. a result)."""
        raise ValueError(f"{type(self).__name__}: unexpected job event {event['kind']!r}")

    def on_end(self, kind: str, event: dict) -> None:
        """The job ended (``kind`` finished, stopped or error); sets the closing status."""
        if kind == "stopped":
            self.status = "stopped"
        elif kind == "error":
            self.status = f"error: {event['message']}"

    def shutdown(self) -> None:
        """Stop the job (the session is closing)."""
        if self._job is not None:
            self._job.stop()


def wait_until_done(state, timeout_s: float, poll_s: float = 0.1) -> None:
    """Drive a dashboard state without a browser: call ``state.poll()`` (as the page's periodic
    callback would) until ``state.running`` is False or ``timeout_s`` seconds have passed."""
    t0 = time.perf_counter()
    while state.running and time.perf_counter() - t0 < timeout_s:
        time.sleep(poll_s)
        state.poll()
    state.poll()
