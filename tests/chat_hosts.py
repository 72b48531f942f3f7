"""The machines of tests/test_redis_chat.py: network namespaces joined to the root namespace by
veth pairs (one per host, each with its own address), a redis-server, asgiws hosts running
examples/chat and nginx in front of them with examples/chat/nginx.conf. Everything started here
is stopped, and every namespace deleted, by :func:`running_cluster` even when the test fails."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from cli_process import clean_env
from lines import DEADLINE_S, OutputLines
from ports import free_port
from proxy_stack import nginx_main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "chat"
HOST_PORT = 8000


def workers_in(host_args: tuple[str, ...]) -> int:
    """How many worker processes a host started with these arguments runs."""
    if "--workers" in host_args:
        return int(host_args[host_args.index("--workers") + 1])
    return 1


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set: that is a failure")
    pytest.skip(reason)


# -- Processes -----------------------------------------------------------------------------------


class Process(OutputLines):
    """A subprocess whose merged output is read line by line."""

    def __init__(self, what: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.what = what
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self._read_lines()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=DEADLINE_S)
        self.output()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=DEADLINE_S)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


@dataclass
class Host:
    """A network namespace joined to the root namespace by a veth pair on 10.203.N.0/24."""

    label: str
    namespace: str
    veth: str
    address: str  # inside the namespace: the host's own address
    gateway: str  # the root namespace's end, where nginx and redis are reached
    server: Process | None = None

    @property
    def upstream(self) -> str:
        return f"{self.address}:{HOST_PORT}"


def free_subnets(count: int) -> list[int]:
    """Third octets of 10.203.N.0/24 networks not on any interface (other tests may hold some)."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    free = [n for n in range(1, 255) if f" 10.203.{n}." not in used]
    return random.sample(free, count)


def make_host(label: str, subnet: int) -> Host:
    tag = f"{os.getpid() % 100000}{label}"
    host = Host(
        label,
        namespace=f"asgiws-chat-{tag}",
        veth=f"achat{tag}",
        address=f"10.203.{subnet}.2",
        gateway=f"10.203.{subnet}.1",
    )
    ip("netns", "add", host.namespace)
    return host


def link_host(host: Host) -> None:
    ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.namespace)
    ip("addr", "add", f"{host.gateway}/24", "dev", host.veth)
    ip("link", "set", host.veth, "up")
    ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
    ip("-n", host.namespace, "link", "set", "eth0", "up")
    ip("-n", host.namespace, "link", "set", "lo", "up")


def start_host(host: Host, redis_port: int, host_args: tuple[str, ...]) -> Process:
    argv = ["ip", "netns", "exec", host.namespace, sys.executable, "-m", "asgiws", "app:app"]
    argv += ["--app-dir", str(EXAMPLE), "--host", host.address, "--port", str(HOST_PORT)]
    argv += ["--forwarded-allow-ips", host.gateway, *host_args]
    env = clean_env(REDIS_URL=f"redis://{host.gateway}:{redis_port}/0", CHAT_BACKOFF_MAX="1")
    server = Process(f"host {host.label}", argv, env)
    try:
        server.wait_for_line(r"running on http://")
        server.wait_for_count(r"chat: subscribed to 'chat'", workers_in(host_args))
    except BaseException:
        server.stop()  # not left running in a namespace about to be deleted
        raise
    return server


def start_redis(binds: list[str], port: int, tmp: Path) -> Process:
    argv = ["redis-server", "--port", str(port), "--bind", *binds]
    argv += ["--save", "", "--appendonly", "no", "--dir", str(tmp), "--protected-mode", "no"]
    redis = Process("redis-server", argv)
    try:
        redis.wait_for_line(r"Ready to accept connections")
    except BaseException:
        redis.stop()
        raise
    return redis


def nginx_config(tmp: Path, hosts: list[Host], port: int) -> str:
    """examples/chat/nginx.conf with this test's addresses, in a whole nginx.conf."""
    site = (EXAMPLE / "nginx.conf").read_text()
    for old, new in [
        ("server 10.0.0.11:8000", f"server {hosts[0].upstream}"),
        ("server 10.0.0.12:8000", f"server {hosts[1].upstream}"),
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("fail_timeout=10s", "fail_timeout=1s"),  # so that the test waits less for a host back
    ]:
        assert site.count(old) == (2 if "fail" in old else 1), old
        site = site.replace(old, new)
    return nginx_main(tmp, site, 1024)


@dataclass
class Cluster:
    hosts: list[Host]
    redis_port: int
    redis: Process
    nginx: Process
    nginx_port: int
    tmp: Path
    host_args: tuple[str, ...]
    processes: list[Process]  # every process started, stopped at the end (again is harmless)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.nginx_port}/ws"

    @property
    def workers_per_host(self) -> int:
        return workers_in(self.host_args)

    def start_host(self, host: Host) -> None:
        host.server = start_host(host, self.redis_port, self.host_args)
        self.processes.append(host.server)

    def start_redis(self) -> None:
        self.redis = start_redis([h.gateway for h in self.hosts], self.redis_port, self.tmp)
        self.processes.append(self.redis)


@contextlib.contextmanager
def running_cluster(tmp_path: Path, host_args: tuple[str, ...]) -> Iterator[Cluster]:
    """Two hosts (asgiws ``host_args``), redis and nginx, all started; all stopped at the end."""
    for tool in ("ip", "redis-server", "nginx"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (.ci/run installs it)")
    hosts: list[Host] = []
    started: list[Process] = []
    try:
        for label, subnet in zip("ab", free_subnets(2), strict=True):
            try:
                hosts.append(make_host(label, subnet))
            except RuntimeError as error:
                unavailable(f"cannot create a network namespace: {error}")
            try:
                link_host(hosts[-1])
            except RuntimeError as error:
                unavailable(f"cannot link a network namespace to this one: {error}")
        redis_port = free_port()
        redis = start_redis([h.gateway for h in hosts], redis_port, tmp_path)
        started.append(redis)
        for host in hosts:
            host.server = start_host(host, redis_port, host_args)
            started.append(host.server)
        nginx_port = free_port()
        (tmp_path / "nginx.conf").write_text(nginx_config(tmp_path, hosts, nginx_port))
        nginx_argv = ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        nginx = Process("nginx", nginx_argv)
        started.append(nginx)
        wait_for_port(nginx_port, nginx)
        yield Cluster(hosts, redis_port, redis, nginx, nginx_port, tmp_path, host_args, started)
    finally:
        # nginx and the hosts first, redis last: a host that loses redis logs it.
        for process in sorted(reversed(started), key=lambda p: p.what == "redis-server"):
            process.stop()
            print(f"---- {process.what} ({process.process.returncode})", *process.lines[-40:])
        for host in hosts:
            with contextlib.suppress(RuntimeError):
                ip("netns", "del", host.namespace)  # takes the veth pair with it


def wait_for_port(port: int, process: Process) -> None:
    """nginx prints nothing when it is ready: connect, a bounded number of times."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert process.process.poll() is None, f"nginx exited: {process.output()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "nginx did not start listening"
            time.sleep(0.05)
