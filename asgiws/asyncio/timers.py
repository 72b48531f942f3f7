"""Coarse timers for every connection of a server, with one event-loop timer between them.

A connection changes its timer several times in even the shortest life (request head, keep-alive
ping, closing handshake, then none). With ``loop.call_later`` each change allocates a handle and,
under uvloop, a libuv timer, and each cancellation frees them again. Here a deadline is instead
rounded up to the next tick of :data:`RESOLUTION` seconds, and connections whose deadlines fall in
the same tick share one bucket: arming is a set insertion, disarming a removal, and the event loop
holds a single timer, for the earliest bucket.

A timer fires between 0 and :data:`RESOLUTION` seconds after its deadline, never before it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Protocol

# Seconds between ticks: the most a timer fires late.
RESOLUTION = 0.05
# A loop timer may wake a little before the time it was given (libuv counts milliseconds).
_EARLY = 0.002


class Clock(Protocol):
    """What the wheel needs of an event loop."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object], /) -> Cancellable: ...


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timed(Protocol):
    """Something that owns one timer of the wheel at a time."""

    def on_tick(self, tick: int) -> None:
        """The timer armed for ``tick`` is due (disarm it first when no longer wanted)."""


class TimerWheel:
    """Deadlines in buckets of :data:`RESOLUTION` seconds; one loop timer for the earliest."""

    __slots__ = ("_buckets", "_handle", "_handle_tick", "_ticks", "loop", "resolution")

    def __init__(self, loop: Clock, resolution: float = RESOLUTION) -> None:
        self.loop = loop
        self.resolution = resolution
        self._buckets: dict[int, set[Timed]] = {}
        self._ticks: list[int] = []  # a heap of the ticks that have a bucket
        self._handle: Cancellable | None = None
        self._handle_tick = 0  # the tick the loop timer is set for (0: none)

    def __len__(self) -> int:
        """Timers armed (for tests and statistics)."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def arm(self, owner: Timed, delay: float) -> int:
        """Call ``owner.on_tick(tick)`` ``delay`` seconds from now or a little later.

        Returns the tick, which :meth:`disarm` needs. An owner arms one timer at a time: it
        disarms the last before arming the next.
        """
        tick = math.ceil((self.loop.time() + delay) / self.resolution)
        bucket = self._buckets.get(tick)
        if bucket is None:
            bucket = self._buckets[tick] = set()
            heapq.heappush(self._ticks, tick)
            if not self._handle_tick or tick < self._handle_tick:
                self._schedule(tick)
        bucket.add(owner)
        return tick

    def disarm(self, owner: Timed, tick: int) -> None:
        """Forget the timer ``arm`` returned ``tick`` for; nothing happens if it has fired."""
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.discard(owner)  # An empty bucket goes when its tick comes.

    def close(self) -> None:
        """Drop every timer and the loop timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._handle_tick = 0
        self._buckets.clear()
        self._ticks.clear()

    def _schedule(self, tick: int) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle_tick = tick
        self._handle = self.loop.call_at(tick * self.resolution, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._handle_tick = 0
        ticks = self._ticks
        buckets = self._buckets
        now = self.loop.time() + _EARLY
        while ticks and ticks[0] * self.resolution <= now:
            tick = heapq.heappop(ticks)
            bucket = buckets.pop(tick, None)
            if bucket:
                for owner in list(bucket):
                    owner.on_tick(tick)
        # Buckets whose every timer was disarmed need no wake-up.
        while ticks and not buckets.get(ticks[0]):
            buckets.pop(heapq.heappop(ticks), None)
        if ticks:
            self._schedule(ticks[0])
