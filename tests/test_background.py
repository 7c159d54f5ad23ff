"""Decoding ahead and encoding behind (`vidseg.io.background`): order, errors, early stop, bounded queues."""

from __future__ import annotations

import threading
import time

import pytest

from vidseg.io.background import WriteBehind, read_ahead


class Source:
    """An iterator that records what was produced, in which thread, and whether it was closed."""

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at
        self.produced: list[int] = []
        self.threads: set[str] = set()
        self.closed = False

    def __iter__(self):
        try:
            for i in range(self.n):
                if i == self.fail_at:
                    raise ValueError(f"bad item {i}")
                self.threads.add(threading.current_thread().name)
                self.produced.append(i)
                yield i
        finally:
            self.closed = True


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_read_ahead_keeps_order_and_closes(depth):
    src = Source(20)
    items = iter(src)
    assert list(read_ahead(items, depth)) == list(range(20))
    assert src.closed
    assert src.threads == ({"MainThread"} if depth == 0 else {"vidseg-read-ahead"})


@pytest.mark.parametrize("depth", [0, 2])
def test_read_ahead_raises_the_error_after_the_items_before_it(depth):
    got = []
    with pytest.raises(ValueError, match="bad item 5"):
        for x in read_ahead(iter(Source(10, fail_at=5)), depth):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_read_ahead_stops_early_within_its_depth():
    src = Source(1000)
    gen = read_ahead(iter(src), depth=3)
    assert [next(gen) for _ in range(4)] == [0, 1, 2, 3]
    time.sleep(0.1)  # let the producer fill the queue
    gen.close()
    assert src.closed
    # 4 consumed + at most 3 waiting + the one being produced when the queue was full + one to see `stop`
    assert len(src.produced) <= 4 + 3 + 2


@pytest.mark.parametrize("depth", [0, 4])
def test_write_behind_writes_everything_in_order(depth):
    written = []
    writer = WriteBehind(written.append, depth)
    for i in range(50):
        writer.put(i)
    assert writer.close() is None
    assert written == list(range(50))


def test_write_behind_error_is_raised_by_the_next_put_and_returned_by_close():
    written = []

    def write(i: int) -> None:
        if i == 3:
            raise OSError("disk full")
        written.append(i)

    writer = WriteBehind(write, depth=2)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            writer.put(i)
            time.sleep(0.01)  # the writer thread catches up, so the error shows before the loop ends
    error = writer.close()
    assert isinstance(error, OSError)
    assert written == [0, 1, 2]
