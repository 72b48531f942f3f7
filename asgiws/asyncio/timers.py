"""Coarse timers for every connection of a server, with one event-loop timer between them.

A connection changes its timer several times in even the shortest life (request head, keep-alive
ping, closing handshake, then none). With ``loop.call_later`` each change allocates a handle and,
under uvloop, a libuv timer, and each cancellation frees them again. Here a deadline is instead
rounded up to the next tick of :data:`RESOLUTION` seconds, and connections whose deadlines fall in
the same tick share one bucket: arming is a set insertion, disarming a removal, and the event loop
holds a single timer, for the earliest bucket.

A timer fires between 0 and :data:`RESOLUTION` seconds after its deadline, never before it.

A delay may also be a :class:`Within`: a timer that may come any time in the last three
quarters of an interval, but must not come together with every other one armed in the same
instant (the first keep-alive ping of each connection). The wheel picks each such timer's
deadline from a low-discrepancy sequence, so n of them armed at once fill the buckets in reach
evenly; see :class:`Within`.
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
# disarm() leaves an emptied bucket in place until its tick, for the next timer that lands in
# it: the head, keep-alive and closing timers of busy connections come back to the same few
# buckets, and reusing them spares a set and a heap push per arm. Far deadlines are seldom
# shared, though, and connections that come and go with an hour's ping timer would leave up to
# 3,600 / RESOLUTION empty sets behind (72,000, ~25 MB). So once the wheel holds this many
# buckets, making one more first sweeps out the empty ones, and the next sweep waits until the
# buckets have doubled: a sweep is O(buckets) at most once per that many new buckets, and
# emptied buckets never outnumber this or the live ones.
_SWEEP_FROM = 4096
# 1/phi, the golden ratio's fractional part: the multiples k * _GOLDEN modulo 1 are the most
# evenly spread sequence there is (each new point splits one of the widest gaps left, in the
# golden ratio), so any n consecutive ones put at most about n/m + 1 into each of m equal
# slices of [0, 1).
_GOLDEN = 0.6180339887498949


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


class Within:
    """A delay the wheel chooses in ``(longest / 4, longest]``, a different one for each timer
    armed.

    It is for the first keep-alive ping of a connection (``Timer.FIRST_PING``). Connections
    opened together (a reconnect storm after a restart or a network cut, a load test) would
    otherwise all have their first ping due in the same few ticks, and since every later ping
    is armed for a full interval after the peer's answer, that burst would come back every
    interval, for as long as the connections live: 10,000 opened within 8 s made some 80
    pings per 50-ms tick, written in one go while the active connections waited (their p99
    5.5 ms against 3.5 ms without pings). Spreading each first ping over the whole interval
    takes the correlation away once, and the later pings, still exactly one interval apart,
    keep it away; the rate of pings and the ping timeout stay as configured, and no ping
    comes later than the interval. The alternative, a cap of pings per tick with the rest
    deferred, cannot absorb a burst that lasts (10,000 due within 8 s at 20 per tick take 25 s
    to send, the last 17 s late), would delay every other timer of a full bucket (a head or
    pong timeout is a deadline), and needs a queue the wheel does not have.

    No first ping comes before a quarter of the interval. A connection that has just opened has just
    shown it is alive, and a ping in its first instants is answered in the middle of whatever
    the client is sending: Autobahn|Testsuite's client answers at once even when it is half-way
    through writing a frame (cases 6.4.3 and 6.4.4 send one text frame in chops a second
    apart), and the Pong's bytes then land inside that frame's payload, which fails with 1007.
    A quarter of the interval (5 s by default) is past every such case, and a burst is still
    spread over three quarters of it: 10,000 connections opened over 6.25 s come due at most
    36 in a tick, against 27 over the whole interval and 80 with no spread.

    The offsets come from the golden-ratio sequence rather than a random generator: n timers
    armed in the same instant then land in a bucket each as evenly as whole numbers allow
    (at most about n/m + 1 in each of the m buckets of the interval, where random offsets put
    twice the mean in some), the same way on every run; the cost is one float per wheel and
    an addition per timer, none per connection.
    """

    __slots__ = ("longest",)

    def __init__(self, longest: float) -> None:
        self.longest = longest

    def __repr__(self) -> str:
        return f"Within({self.longest!r})"


class TimerWheel:
    """Deadlines in buckets of :data:`RESOLUTION` seconds; one loop timer for the earliest."""

    __slots__ = (
        "_buckets",
        "_handle",
        "_handle_tick",
        "_phase",
        "_sweep_at",
        "_ticks",
        "loop",
        "resolution",
    )

    def __init__(self, loop: Clock, resolution: float = RESOLUTION) -> None:
        self.loop = loop
        self.resolution = resolution
        self._buckets: dict[int, set[Timed]] = {}
        self._ticks: list[int] = []  # a heap of the ticks that have a bucket
        self._handle: Cancellable | None = None
        self._handle_tick = 0  # the tick the loop timer is set for (0: none)
        self._phase = 0.0  # the last offset given to a Within delay, as a fraction of it
        self._sweep_at = _SWEEP_FROM  # buckets held when the next new one sweeps first

    def __len__(self) -> int:
        """Timers armed (for tests and statistics)."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def arm(self, owner: Timed, delay: float | Within, replaces: int = 0) -> int:
        """Call ``owner.on_tick(tick)`` ``delay`` seconds from now or a little later; for a
        :class:`Within`, after a delay the wheel picks between a quarter of its ``longest`` and
        all of it.

        Returns the tick, which :meth:`disarm` needs. An owner arms one timer at a time: it
        disarms the last before arming the next, or passes its tick as ``replaces`` (one call
        where a connection moves from one timer to the next).
        """
        if isinstance(delay, Within):
            phase = self._phase + _GOLDEN
            if phase >= 1.0:
                phase -= 1.0
            self._phase = phase
            # In (longest / 4, longest]: never later than the interval, nor sooner than a
            # quarter of it.
            delay = delay.longest * (1.0 - 0.75 * phase)
        tick = math.ceil((self.loop.time() + delay) / self.resolution)
        return self.arm_tick(owner, tick, replaces)

    def tick_for(self, delay: float) -> int:
        """The tick a timer of ``delay`` seconds armed now would get (see :meth:`arm_tick`)."""
        return math.ceil((self.loop.time() + delay) / self.resolution)

    def arm_tick(self, owner: Timed, tick: int, replaces: int = 0) -> int:
        """:meth:`arm` for a tick already known (:meth:`tick_for`); returns it."""
        if replaces:
            old = self._buckets.get(replaces)
            if old is not None:
                old.discard(owner)
        bucket = self._buckets.get(tick)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep()
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
            bucket.discard(owner)  # An empty bucket goes when its tick comes (or _sweep).

    @property
    def buckets(self) -> int:
        """Buckets held, emptied ones included (for tests and statistics)."""
        return len(self._buckets)

    def _sweep(self) -> None:
        """Drop the emptied buckets (see _SWEEP_FROM) and their ticks."""
        buckets = self._buckets
        for tick in [tick for tick, bucket in buckets.items() if not bucket]:
            del buckets[tick]
        # In place: _fire may be walking this list (a timer armed from on_tick).
        ticks = self._ticks
        ticks[:] = buckets
        heapq.heapify(ticks)
        self._sweep_at = max(_SWEEP_FROM, 2 * len(buckets))
        # The loop timer may now be set for a tick that has no bucket: it wakes for nothing
        # and sets itself for the next one, as for a bucket emptied by disarm.

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
