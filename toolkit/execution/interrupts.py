"""Ctrl-C during a training loop, taken between batches instead of in the middle of one.

The one process-wide change mertk makes on purpose: while a loop runs, SIGINT sets a flag that the
loop checks after each batch, so it can save a consistent training state and stop; the previous
handler is restored when the loop ends, also on errors. Only in the main thread (elsewhere Python
allows no handler, and the context is a no-op).
"""
from __future__ import annotations

import signal
import threading


class DeferredInterrupt:
    """Context manager; `requested` becomes True when Ctrl-C was pressed inside it."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "DeferredInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
