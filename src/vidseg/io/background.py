"""Decoding ahead and encoding behind in background threads, so that the model bounds `vidseg segment`.

PyAV decodes and encodes, PIL and numpy draw, and torch runs its operators with the GIL released, so a
thread that decodes the next frames and one that draws and encodes the previous ones overlap with the
model. Both queues are bounded (`depth` items): memory stays that of a few frames.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from contextlib import suppress
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


def _close(items: Iterator[object]) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()


def read_ahead(items: Iterator[T], depth: int) -> Generator[T, None, None]:
    """`items` in order, produced up to `depth` ahead by a background thread (`depth` 0: no thread).

    An exception raised by `items` is raised here, after the items before it. Closing this generator (or
    leaving it early) stops the thread after the item it is producing and closes `items`.
    """
    if depth <= 0:
        try:
            yield from items
        finally:
            _close(items)
        return
    handover: queue.Queue[tuple[object, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                handover.put((item, None))
                if stop.is_set():
                    return
            handover.put((_END, None))
        except BaseException as e:  # handed to the consumer, which raises it
            handover.put((_END, e))
        finally:
            _close(items)

    thread = threading.Thread(target=produce, name="vidseg-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = handover.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while thread.is_alive():  # a producer blocked on the full queue needs one free slot to see `stop`
            with suppress(queue.Empty):
                handover.get(timeout=0.05)
        thread.join()


class WriteBehind(Generic[T]):
    """Calls `write(item)` for every `put` item, in order, in a background thread, with at most `depth`
    items waiting (`depth` 0: `put` writes at once).

    An exception of `write` is raised by the next `put`; the items after it are dropped. `close()` waits for
    the items put so far and returns that exception (or None) rather than raising it, so that a caller can
    finish its other files first.
    """

    def __init__(self, write: Callable[[T], object], depth: int):
        self._write = write
        self.error: BaseException | None = None
        self._queue: queue.Queue[object] | None = None
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._consume, name="vidseg-write-behind", daemon=True)
            self._thread.start()

    def _consume(self) -> None:
        assert self._queue is not None
        while (item := self._queue.get()) is not _END:
            if self.error is None:
                try:
                    self._write(item)  # type: ignore[arg-type]
                except BaseException as e:  # raised by the caller's next put
                    self.error = e

    def put(self, item: T) -> None:
        if self.error is not None:
            raise self.error
        if self._queue is None:
            self._write(item)
        else:
            self._queue.put(item)

    def close(self) -> BaseException | None:
        """Wait until every item put is written (or dropped after an error); the error of `write`, if any."""
        if self._thread is not None and self._thread.is_alive():
            assert self._queue is not None
            self._queue.put(_END)
            self._thread.join()
        return self.error
