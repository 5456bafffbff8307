"""A fixed-capacity sample FIFO between the microphone and the frontend.

Audio callbacks deliver blocks of whatever size the driver likes (0, 1, odd,
bigger than a chunk); the recogniser wants fixed-size pieces. The buffer is
preallocated once (no allocation per callback on a Raspberry Pi) and copies
at most two slices per write/read.

Overflow policy when a write does not fit:
- "error": raise RingBufferOverflow (a ValueError) and leave the buffer unchanged;
  the caller is not keeping up and should know.
- "drop_oldest": keep the newest `capacity` samples; the number discarded is
  added to `dropped` (live input: stale audio is worth less than fresh audio).
"""

from __future__ import annotations

import numpy as np

OVERFLOW_POLICIES = ("error", "drop_oldest")


class RingBufferOverflow(ValueError):
    """A write does not fit and the policy is "error"."""


class RingBuffer:
    def __init__(self, capacity: int, dtype=np.float32, overflow: str = "error"):
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow policy {overflow!r} is not one of {OVERFLOW_POLICIES}")
        self.capacity = int(capacity)
        self.dtype = np.dtype(dtype)
        self.overflow = overflow
        self._data = np.zeros(self.capacity, dtype=self.dtype)
        self._head = 0  # index of the oldest sample
        self._size = 0
        self.dropped = 0  # samples discarded by "drop_oldest"

    @property
    def available(self) -> int:
        """Samples ready to read."""
        return self._size

    @property
    def free(self) -> int:
        """Samples that can be written without overflow."""
        return self.capacity - self._size

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        """Forget the content (the `dropped` count is kept: it is a statistic)."""
        self._head = 0
        self._size = 0

    def write(self, block) -> int:
        """Append a 1-D block; returns the number of old samples dropped by it."""
        block = np.asarray(block)
        if block.ndim != 1:
            raise ValueError(f"write() takes a 1-D block, got shape {block.shape}; downmix or flatten first")
        n = len(block)
        if n == 0:
            return 0
        dropped = 0
        if n > self.free:
            if self.overflow == "error":
                raise RingBufferOverflow(
                    f"writing {n} samples into a ring buffer with {self.free} free of {self.capacity}; "
                    "read more often, enlarge the buffer, or use overflow='drop_oldest'")
            if n >= self.capacity:  # only the newest `capacity` samples of the block survive
                dropped = self._size + n - self.capacity
                block = block[n - self.capacity:]
                n = self.capacity
                self._head, self._size = 0, 0
            else:
                dropped = n - self.free
                self._discard(dropped)
            self.dropped += dropped
        tail = (self._head + self._size) % self.capacity
        first = min(n, self.capacity - tail)
        self._data[tail: tail + first] = block[:first]
        self._data[: n - first] = block[first:]
        self._size += n
        return dropped

    def peek(self, n: int) -> np.ndarray:
        """The oldest n samples (a copy) without consuming them."""
        n = self._check_count(n)
        first = min(n, self.capacity - self._head)
        out = np.empty(n, dtype=self.dtype)
        out[:first] = self._data[self._head: self._head + first]
        out[first:] = self._data[: n - first]
        return out

    def read(self, n: int) -> np.ndarray:
        """Remove and return exactly the oldest n samples."""
        out = self.peek(n)
        self._discard(len(out))
        return out

    def skip(self, n: int) -> None:
        """Discard the oldest n samples (e.g. when an overrun guard says so)."""
        self._discard(self._check_count(n))

    def _check_count(self, n: int) -> int:
        if int(n) != n or n < 0:
            raise ValueError(f"sample count must be a non-negative integer, got {n!r}")
        n = int(n)
        if n > self._size:
            raise ValueError(f"asked for {n} samples but only {self._size} are available; check .available first")
        return n

    def _discard(self, n: int) -> None:
        self._head = (self._head + n) % self.capacity
        self._size -= n
        if self._size == 0:
            self._head = 0  # keeps later writes contiguous
