"""asgiws.asyncio.timers.TimerWheel, on a clock the test moves by hand (no sleeps, exact times)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from asgiws.asyncio.timers import TimerWheel, Within


class Handle:
    def __init__(self, clock: FakeClock, when: float, callback: Callable[[], object]) -> None:
        self.clock = clock
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """The two event-loop methods the wheel uses; advance() runs what is due, in time order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.handles: list[Handle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object], /) -> Handle:
        handle = Handle(self, when, callback)
        self.handles.append(handle)
        return handle

    @property
    def pending(self) -> list[Handle]:
        return [h for h in self.handles if not h.cancelled]

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        for _ in range(1000):  # bounded: a wheel that reschedules forever fails the test
            due = sorted((h for h in self.pending if h.when <= end), key=lambda h: h.when)
            if not due:
                break
            handle = due[0]
            handle.cancelled = True  # run once
            self.now = max(self.now, handle.when)
            handle.callback()
        else:
            raise AssertionError("the wheel kept rescheduling")
        self.now = end


class Owner:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.fired: list[tuple[int, float]] = []

    def on_tick(self, tick: int) -> None:
        self.fired.append((tick, self.clock.now))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_fires_after_the_deadline_and_within_one_resolution(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owner = Owner(clock)
    start = clock.now
    tick = wheel.arm(owner, 1.012)
    clock.advance(1.0)
    assert owner.fired == []
    clock.advance(0.011)
    assert owner.fired == []  # never early
    clock.advance(0.1)
    assert len(owner.fired) == 1
    fired_tick, at = owner.fired[0]
    assert fired_tick == tick
    assert start + 1.012 <= at <= start + 1.012 + 0.05
    assert len(wheel) == 0
    assert clock.pending == []  # nothing left to wake the loop for


def test_disarmed_timer_never_fires(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owner = Owner(clock)
    tick = wheel.arm(owner, 0.5)
    wheel.disarm(owner, tick)
    clock.advance(2.0)
    assert owner.fired == []
    assert len(wheel) == 0


def test_rearm_moves_the_timer(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owner = Owner(clock)
    first = wheel.arm(owner, 0.5)
    wheel.disarm(owner, first)
    second = wheel.arm(owner, 3.0)
    assert second != first
    clock.advance(1.0)
    assert owner.fired == []
    clock.advance(2.1)
    assert [t for t, _ in owner.fired] == [second]


def test_arm_replacing_a_tick_moves_the_timer_in_one_call(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owner, neighbour = Owner(clock), Owner(clock)
    first = wheel.arm(owner, 0.5)
    assert wheel.arm(neighbour, 0.5) == first  # the same bucket, which must keep it
    second = wheel.arm(owner, 3.0, replaces=first)
    assert second != first
    assert len(wheel) == 2
    clock.advance(1.0)
    assert owner.fired == []
    assert [t for t, _ in neighbour.fired] == [first]
    clock.advance(2.1)
    assert [t for t, _ in owner.fired] == [second]
    # A tick that has fired already, or was never armed, is nothing to replace.
    third = wheel.arm(owner, 0.5, replaces=second)
    assert wheel.arm(owner, 0.5, replaces=third + 1000) == third
    assert len(wheel) == 1  # (the stray arm above put the owner in the same bucket again)


def test_owners_in_one_bucket_share_one_loop_timer(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owners = [Owner(clock) for _ in range(100)]
    for owner in owners:
        wheel.arm(owner, 0.2)
    assert len(clock.pending) == 1
    assert len(wheel) == 100
    clock.advance(0.3)
    assert all(len(owner.fired) == 1 for owner in owners)


def test_an_earlier_deadline_replaces_the_loop_timer(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    late, early = Owner(clock), Owner(clock)
    wheel.arm(late, 10.0)
    wheel.arm(early, 0.1)
    assert len(clock.pending) == 1
    assert clock.pending[0].when <= clock.now + 0.15
    clock.advance(0.2)
    assert len(early.fired) == 1
    assert late.fired == []
    # The wheel woke for the early one and set the loop timer for the late one.
    assert len(clock.pending) == 1
    clock.advance(10.0)
    assert len(late.fired) == 1


def test_buckets_emptied_by_disarm_are_skipped(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    a, b = Owner(clock), Owner(clock)
    tick_a = wheel.arm(a, 0.1)
    wheel.arm(b, 5.0)
    wheel.disarm(a, tick_a)
    clock.advance(0.2)  # wakes for a's empty bucket, goes back to sleep until b's
    assert [h.when for h in clock.pending] == [pytest.approx(clock.now + 4.8, abs=0.06)]
    clock.advance(5.0)
    assert len(b.fired) == 1
    assert a.fired == []


def test_an_owner_rearming_from_its_callback(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)

    class Repeating(Owner):
        def on_tick(self, tick: int) -> None:
            super().on_tick(tick)
            if len(self.fired) < 3:
                wheel.arm(self, 1.0)

    owner = Repeating(clock)
    wheel.arm(owner, 1.0)
    clock.advance(3.5)
    assert len(owner.fired) == 3
    times = [at for _, at in owner.fired]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))


def test_a_loop_timer_that_wakes_a_millisecond_early_still_fires(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owner = Owner(clock)
    wheel.arm(owner, 0.5)
    handle = clock.pending[0]
    clock.now = handle.when - 0.001  # libuv rounds to whole milliseconds
    handle.cancelled = True
    handle.callback()
    assert len(owner.fired) == 1


def test_close_drops_everything(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    owner = Owner(clock)
    wheel.arm(owner, 0.5)
    wheel.close()
    assert clock.pending == []
    clock.advance(1.0)
    assert owner.fired == []
    assert len(wheel) == 0


def test_within_delays_armed_in_one_instant_are_spread_evenly_and_never_late(
    clock: FakeClock,
) -> None:
    # 1,000 connections opened together, their first pings in the last three quarters of a
    # 20 s interval: 300 ticks.
    wheel = TimerWheel(clock, resolution=0.05)
    owners = [Owner(clock) for _ in range(1000)]
    start = clock.now
    latest = wheel.arm(Owner(clock), 20.0)  # where a plain 20 s timer goes
    earliest = wheel.arm(Owner(clock), 5.0)  # and a plain 5 s one
    ticks = [wheel.arm(owner, Within(20.0)) for owner in owners]
    assert all(tick <= latest for tick in ticks)  # never later than the interval
    assert all(tick >= earliest for tick in ticks)  # nor sooner than a quarter of it
    per_tick: dict[int, int] = {}
    for tick in ticks:
        per_tick[tick] = per_tick.get(tick, 0) + 1
    # 3.3 a tick on average; the golden-ratio offsets put 3 to 5 in each (random ones put 9 or
    # 10 in some, and leave some ticks empty), and use every tick of the window.
    assert max(per_tick.values()) == 5
    assert min(per_tick.values()) == 3
    assert len(per_tick) == 300
    assert sorted(per_tick) == list(range(min(per_tick), latest + 1))
    clock.advance(25.0)
    assert all(len(owner.fired) == 1 for owner in owners)
    times = [owner.fired[0][1] for owner in owners]
    assert all(start + 5.0 < at <= start + 20.0 + 0.05 for at in times)
    # The loop woke once per bucket: no wake-up fired more than 5 of them.
    assert len(set(times)) == 300


def test_within_delays_are_spread_when_armed_in_bursts(clock: FakeClock) -> None:
    # 10,000 connections opened 80 per tick for 125 ticks (6.25 s), as in the idle+active
    # benchmark: armed with the plain interval they would come due 80 per tick, every interval.
    wheel = TimerWheel(clock, resolution=0.05)
    ticks: list[int] = []
    for _ in range(125):
        ticks.extend(wheel.arm(Owner(clock), Within(20.0)) for _ in range(80))
        clock.now += 0.05
    per_tick: dict[int, int] = {}
    for tick in ticks:
        per_tick[tick] = per_tick.get(tick, 0) + 1
    # 10,000 over the 420 ticks in reach (24 a tick on average), at most 36 in one (27 if
    # the first pings could come at once, see Within).
    assert max(per_tick.values()) == 36
    assert len(per_tick) == 420


def test_within_offsets_are_the_same_on_every_wheel(clock: FakeClock) -> None:
    first, second = TimerWheel(clock), TimerWheel(clock)
    a = [first.arm(Owner(clock), Within(1.0)) for _ in range(50)]
    b = [second.arm(Owner(clock), Within(1.0)) for _ in range(50)]
    assert a == b
    assert len(set(a)) == 15  # the last 0.75 s of 1 s is 15 ticks, and all of them are used
    assert repr(Within(1.0)) == "Within(1.0)"


def test_plain_delays_between_within_ones_keep_their_deadline(clock: FakeClock) -> None:
    wheel = TimerWheel(clock, resolution=0.05)
    start = clock.now
    plain = Owner(clock)
    for _ in range(10):
        wheel.arm(Owner(clock), Within(5.0))
    wheel.arm(plain, 1.012)
    clock.advance(1.011)
    assert plain.fired == []
    clock.advance(0.06)
    assert len(plain.fired) == 1
    assert start + 1.012 <= plain.fired[0][1] <= start + 1.012 + 0.05


def test_emptied_buckets_are_swept_and_memory_stays_flat(clock: FakeClock) -> None:
    """Connections that come and go, each with an hour's ping timer (--ws-ping-interval 3600)
    and a near one: the wheel does not keep a set for every 50-ms tick of the hour that some
    connection once armed."""
    import tracemalloc

    wheel = TimerWheel(clock, resolution=0.05)
    keeper = Owner(clock)
    keeper_tick = wheel.arm(keeper, 7200.0)  # stays armed through every sweep
    owners = [Owner(clock) for _ in range(20)]
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        for step in range(40_000):  # ten sweeps' worth of new buckets
            owner = owners[step % len(owners)]
            near = wheel.arm(owner, 0.5)  # shared by every step: reused
            far = wheel.arm(owner, 3600.0 + step * 0.05, replaces=near)  # a new tick each step
            wheel.disarm(owner, far)
        grown = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert len(wheel) == 1  # only the keeper: every owner disarmed its last timer
    assert wheel.buckets <= 4096
    assert grown < 2 * 1024 * 1024, f"the wheel grew by {grown} bytes"
    # The keeper's timer survived the sweeps; nothing else fires.
    clock.advance(7200.1)
    assert [tick for tick, _ in keeper.fired] == [keeper_tick]
    assert all(owner.fired == [] for owner in owners)


def test_a_sweep_from_a_callback_keeps_the_timers_due_later(clock: FakeClock) -> None:
    """on_tick may arm a timer that makes the wheel sweep while it is firing a tick."""
    wheel = TimerWheel(clock, resolution=0.05)

    class Arming(Owner):
        def on_tick(self, tick: int) -> None:
            super().on_tick(tick)
            for extra in range(3):  # new buckets: the second one sweeps
                wheel.arm(Owner(self.clock), 20_000.0 + extra)

    first, keeper, late = Arming(clock), Owner(clock), Owner(clock)
    wheel.arm(first, 1.0)
    keeper_tick = wheel.arm(keeper, 5.0)  # live, ahead of the emptied ones
    late_tick = wheel.arm(late, 10_000.0)
    for step in range(4093):  # emptied buckets a second apart: 4,096 buckets in all
        owner = Owner(clock)
        wheel.disarm(owner, wheel.arm(owner, 10.0 + step))
    assert wheel.buckets == 4096
    clock.advance(1.1)
    assert len(first.fired) == 1
    assert wheel.buckets == 5  # keeper, late and the three from the callback
    clock.advance(10_000.0)
    assert [tick for tick, _ in keeper.fired] == [keeper_tick]
    assert [tick for tick, _ in late.fired] == [late_tick]
