"""Background jobs for the dashboard: work in a thread, results as events on a queue.

The worker never touches widgets or plots.  It calls ``emit(event)`` (a plain dict) and checks
``stop_requested()`` between units of work; the session's periodic callback calls ``drain()`` on
the server's event loop and applies the events to its streams/parameters.  This is the pattern
Panel documents for threads: direct cross-thread updates of Bokeh models lose data.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable

from workbench.errors import UserInputError

JobFn = Callable[[Callable[[dict], None], Callable[[], bool]], None]


class BackgroundJob:
    """Run ``fn(emit, stop_requested)`` in a daemon thread.

    Events: whatever ``fn`` emits, then exactly one final ``{"kind": "finished"}``,
    ``{"kind": "stopped"}`` or ``{"kind": "error", "message": ...}`` (user-input errors keep their
    message; unexpected errors are summarised in one line and the traceback kept in ``detail``).
    """

    def __init__(self, fn: JobFn, name: str = "job"):
        self._fn = fn
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BackgroundJob:
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
        try:
            self._fn(self._queue.put, self._stop.is_set)
        except UserInputError as err:
            self._queue.put({"kind": "error", "message": str(err)})
        except Exception as err:  # reported to the UI as one line, never a traceback on screen
            self._queue.put({"kind": "error", "message": f"{type(err).__name__}: {err}",
                             "detail": traceback.format_exc()})
        else:
            self._queue.put({"kind": "stopped" if self._stop.is_set() else "finished"})
