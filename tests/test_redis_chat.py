"""examples/chat across machines: a real redis-server, two asgiws hosts each in its own network
namespace with its own address, and one nginx upstream in front (examples/chat/nginx.conf).

Clients connect from the root namespace to nginx on 127.0.0.1, each from its own loopback
address, so the app must see that address through nginx's X-Forwarded-For (the hosts trust
nginx's side of their veth link with --forwarded-allow-ips). The test checks that every message
reaches every client exactly once and in order per sender, takes one host down under load (its
clients get 1001 and reconnect through nginx to the other host; nginx marks the host down), then
restarts redis under load: every client is told "down" and then "up", a message sent while it is
down is answered with an error, and fan-out resumes (examples/chat/README.md).

Namespaces need root (CAP_NET_ADMIN, CAP_SYS_ADMIN): without them the test is skipped, except
when CI is set, where that is a failure; the same for redis-server, nginx and ip (.ci/run
installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest
from apps import read_frame, read_head
from chat_clients import TIMEOUT_S, Client, World, outcome_problems, wait_delivered
from chat_hosts import (
    EXAMPLE,
    Cluster,
    Host,
    Process,
    running_cluster,
    start_redis,
    unavailable,
)
from cli_process import ServerProcess
from ports import free_port
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wire import OP_CLOSE, ws_request

# The command line of each host after the app, address and port: two worker processes each, so
# fan-out crosses processes on one host as well as hosts. The test counts the workers it must
# reach from this constant.
HOST_ARGS: tuple[str, ...] = ("--workers", "2")
CLIENTS_PER_WORKER = 3
ROUND = 20  # messages each client sends in a round where everything must arrive
MIN_UNDER_LOAD = 10  # messages each client has answered before a host or redis is taken down


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, HOST_ARGS) as running:
        yield running


async def test_chat_across_hosts(cluster: Cluster) -> None:
    world = World(cluster.url)
    try:
        await connect_everywhere(world, cluster.hosts, cluster.workers_per_host, first=0)
        assert {s.server for s in world.open_sessions()} == {h.upstream for h in cluster.hosts}
        await every_message_everywhere(world, "first")
        await host_down_under_load(world, cluster)
        await host_back(world, cluster)
        await redis_restart_under_load(world, cluster)
        await every_message_everywhere(world, "last")
        assert not outcome_problems(world)
    finally:
        if world.loads:
            world.stopping = True
            await world.notify()
            await asyncio.gather(*world.loads, return_exceptions=True)
        for client in world.clients:
            with contextlib.suppress(Exception):
                await client.close()


async def connect_everywhere(world: World, hosts: list[Host], workers: int, first: int) -> None:
    """Clients through nginx (numbered from ``first``) until every worker of each of ``hosts``
    has CLIENTS_PER_WORKER; the clients that land elsewhere stay too. Workers share one
    listening socket and the kernel may favour one of them while the others are idle, so the
    clients connect in concurrent batches."""
    upstreams = {host.upstream for host in hosts}
    workers *= len(hosts)
    counts: dict[tuple[str, int], int] = {}
    for batch in range(8):
        counts.clear()
        for session in world.open_sessions():
            if session.server in upstreams:
                counts[session.worker] = counts.get(session.worker, 0) + 1
        if len(counts) == workers and min(counts.values()) >= CLIENTS_PER_WORKER:
            return
        size = 2 * workers
        clients = [Client(world, first + batch * size + n) for n in range(size)]
        for session in await asyncio.gather(*(client.open() for client in clients)):
            assert session.redis == "up", session.welcome
    raise AssertionError(f"clients did not reach all {workers} workers: {counts}")


async def every_message_everywhere(world: World, label: str) -> None:
    """Each client sends ROUND messages back to back: every open session gets each of them."""
    sessions = world.open_sessions()
    before = {session.id: len(session.got) for session in sessions}
    await asyncio.gather(*(client.burst(ROUND, label) for client in world.clients))
    await wait_delivered(world, f"the {label} round")
    for session in sessions:
        assert len(session.got) - before[session.id] == ROUND * len(sessions), session.id


async def under_load(world: World, clients: list[Client], what: str) -> None:
    """Wait until each client has MIN_UNDER_LOAD more messages of the load echoed."""
    goal = {client: client.load_echoes + MIN_UNDER_LOAD for client in clients}
    await world.until(lambda: all(c.load_echoes >= goal[c] for c in clients), what)


async def host_down_under_load(world: World, cluster: Cluster) -> None:
    """SIGTERM one host while every client sends: its clients get 1001 and reconnect through
    nginx to the other host, nginx marks it down, and nothing is lost for anyone else."""
    survivor, victim = cluster.hosts
    assert victim.server is not None
    moving = [c for c in world.clients if c.session.server == victim.upstream]
    staying = [c for c in world.clients if c.session.server == survivor.upstream]
    assert moving and staying
    world.start_load("load")
    await under_load(world, world.clients, "the load before the host goes down")
    assert await asyncio.to_thread(victim.server.stop) == 0, victim.server.output()
    await world.until(
        lambda: all(len(c.sessions) == 2 and not c.session.closed for c in moving),
        "the clients of the host that went down reconnected",
    )
    for client in moving:
        gone, new = client.sessions
        assert gone.close_code == 1001, (client.address, gone.close_code)
        assert new.server == survivor.upstream, new.welcome
    assert all(len(c.sessions) == 1 for c in staying)
    await under_load(world, moving, "the load after the reconnections")
    await world.stop_load()
    await wait_delivered(world, "the load while a host went down")
    await nginx_marked_down(world, cluster, victim, survivor)


async def nginx_marked_down(world: World, cluster: Cluster, victim: Host, survivor: Host) -> None:
    """nginx logs the host it takes out of the upstream; new clients land on the other one.
    Round robin tries the victim within two connections unless it is already marked down."""
    marked = rf"upstream server temporarily disabled.*{re.escape(victim.upstream)}"
    for index in range(200, 203):
        if any(re.search(marked, line) for line in cluster.nginx.lines):
            break
        probe = Client(world, index)
        world.clients.remove(probe)  # not part of the room's checks
        session = await probe.open()
        assert session.server == survivor.upstream, session.welcome
        await probe.close()
    await asyncio.to_thread(cluster.nginx.wait_for_line, marked, 5.0)


async def host_back(world: World, cluster: Cluster) -> None:
    """Start the host again: once fail_timeout has passed nginx sends new clients to it too."""
    victim = cluster.hosts[1]
    await asyncio.to_thread(cluster.start_host, victim)
    # Nothing tells when nginx's fail_timeout (1 s here) is over: probe, a bounded number of
    # times, 0.1 s apart. nginx forgets the failure when the first connection that reached the
    # host again ends, so the probe leaves in any case; then round robin takes the host again.
    for attempt in range(100):
        probe = Client(world, 250 + attempt)
        world.clients.remove(probe)  # not one of the room's clients
        session = await probe.open()
        await probe.close()
        if session.server == victim.upstream:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"nginx sent no new client to {victim.upstream} again")
    await connect_everywhere(world, [victim], cluster.workers_per_host, first=500)
    await every_message_everywhere(world, "back")


async def redis_restart_under_load(world: World, cluster: Cluster) -> None:
    """Stop redis while every client sends: each is told "down", a message it sends then is
    refused, and once redis is back each is told "up" and its messages reach everyone again."""
    hosts = [h for h in cluster.hosts if h.server is not None and h.server.process.poll() is None]
    world.start_load("redis")
    await under_load(world, world.clients, "the load before redis goes down")
    await asyncio.to_thread(cluster.redis.stop)
    await world.until(
        lambda: all(c.session.redis == "down" for c in world.clients),
        'every client told that redis is "down"',
    )
    await world.until(
        lambda: all(c.session.down_outcomes for c in world.clients),
        "every client sent a message while redis was down",
    )
    for client in world.clients:
        assert client.session.down_outcomes == ["error"], client.address
        (seq,) = [s for s in client.session.errored if s == len(client.session.sent)]
        assert client.session.errored[seq] == "redis is unavailable"
    lost = r"chat: lost redis at .*next try in"
    for host in hosts:
        assert host.server is not None
        await asyncio.to_thread(host.server.wait_for_count, lost, cluster.workers_per_host)
    await asyncio.to_thread(cluster.start_redis)
    await world.until(
        lambda: all(c.session.redis == "up" for c in world.clients),
        'every client told that redis is "up" again',
    )
    await under_load(world, world.clients, "the load after redis came back")
    await world.stop_load()
    await wait_delivered(world, "the load while redis restarted")
    for host in hosts:
        assert host.server is not None
        await asyncio.to_thread(
            host.server.wait_for_count, r"chat: subscribed to 'chat'", 2 * cluster.workers_per_host
        )


# -- One host on loopback: what needs no namespaces ----------------------------------------------


@dataclass
class OneHost:
    server: ServerProcess
    port: int
    redis: Process
    redis_port: int
    tmp: Path

    def health(self) -> tuple[int, dict[str, Any]]:
        response = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=TIMEOUT_S)
        return response.status_code, response.json()


@pytest.fixture
def one_host(tmp_path: Path) -> Iterator[OneHost]:
    """examples/chat on 127.0.0.1 with its own redis-server; a queue of 8 messages per client."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (.ci/run installs it)")
    redis_port = free_port()
    redis = start_redis(["127.0.0.1"], redis_port, tmp_path)
    server: ServerProcess | None = None
    try:
        server = ServerProcess(
            *("app:app", "--app-dir", str(EXAMPLE), "--port", "0"),
            REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
            CHAT_OUTBOX="8",
            CHAT_BACKOFF_MAX="1",
        )
        port = int(server.wait_for_line(r"running on http://127\.0\.0\.1:(\d+)").group(1))
        server.wait_for_line(r"chat: subscribed to 'chat'")
        yield OneHost(server, port, redis, redis_port, tmp_path)
    finally:
        if server is not None:
            server.stop()
        redis.stop()


async def next_event(ws: Any) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))


async def test_redis_restart_on_one_host(one_host: OneHost) -> None:
    """What a client sees while redis is away, the readiness probe, and a binary message."""
    url = f"ws://127.0.0.1:{one_host.port}/ws"
    assert one_host.health() == (200, {"redis": "up", "pid": ANY, "clients": 0})
    async with connect(url, proxy=None, open_timeout=TIMEOUT_S) as ws:
        welcome = await next_event(ws)
        assert welcome["client"] == "127.0.0.1" and welcome["redis"] == "up"
        assert one_host.health()[1]["clients"] == 1
        await ws.send("one")
        assert await next_event(ws) == {
            "type": "message",
            "sender": welcome["id"],
            "seq": 1,
            "text": "one",
        }
        await asyncio.to_thread(one_host.redis.stop)
        assert await next_event(ws) == {"type": "status", "redis": "down"}
        assert one_host.health() == (503, {"redis": "down", "pid": ANY, "clients": 1})
        await ws.send("two")
        assert await next_event(ws) == {
            "type": "error",
            "seq": 2,
            "reason": "redis is unavailable",
        }
        one_host.server.wait_for_line(r"chat: lost redis at redis://127\.0\.0\.1:\d+/0 .*next try")
        redis = await asyncio.to_thread(
            start_redis, ["127.0.0.1"], one_host.redis_port, one_host.tmp
        )
        try:
            assert await next_event(ws) == {"type": "status", "redis": "up"}
            assert one_host.health()[0] == 200
            await ws.send("three")
            assert (await next_event(ws))["seq"] == 3
        finally:
            redis.stop()
    async with connect(url, proxy=None, open_timeout=TIMEOUT_S) as ws:
        await next_event(ws)
        await ws.send(b"\x00")
        with pytest.raises(ConnectionClosed) as info:
            await next_event(ws)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (
        1003,
        "this room takes text messages only",
    )


async def test_a_client_that_does_not_read_is_closed_with_1013(one_host: OneHost) -> None:
    """The fan-out never waits for one reader: when 8 messages wait for a client that reads
    nothing (its TCP buffers full), it is closed with 1013 and the others go on."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", one_host.port))
    reader, writer = await asyncio.open_connection(sock=stalled, limit=2**16)
    try:
        writer.write(ws_request("/ws"))
        assert (await read_head(reader)).status == 101
        big = "x" * 65536
        async with connect(f"ws://127.0.0.1:{one_host.port}/ws", proxy=None) as ws:
            await next_event(ws)  # welcome
            logged = asyncio.ensure_future(
                asyncio.to_thread(
                    one_host.server.wait_for_line,
                    r"chat: closing \w+ \(127\.0\.0\.1\): 8 messages behind",
                    TIMEOUT_S,
                )
            )
            seq = 0
            while not logged.done():  # each message waits in the queue of the stalled client
                assert seq < 1000, "the client that does not read was never closed"
                seq += 1
                await ws.send(big)
                assert (await next_event(ws))["seq"] == seq
            await logged
            for more in range(seq + 1, seq + 6):  # the others go on
                await ws.send("still here")
                assert (await next_event(ws))["seq"] == more
        # What was queued, then the close.
        for _ in range(10_000):
            frame = await read_frame(reader, timeout=TIMEOUT_S)
            if frame.opcode == OP_CLOSE:
                break
        assert (frame.close_code, frame.close_reason) == (1013, "too slow: messages were piling up")
    finally:
        writer.close()
