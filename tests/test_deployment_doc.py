"""docs/deployment.md says only what is so: every asgiws flag it names exists, the numbers of its
examples that depend on each other agree, the proxies' idle timeouts in deploy/ outlast the ping
interval, its links lead to files of the repository, and what it says of the open-file limit
is what a real asgiws does at that limit."""

from __future__ import annotations

import importlib.util
import re
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgiws.config import Config
from asgiws.options import options

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "deployment.md"

# Flags of other programs in the page's commands: docker run's and systemctl's.
OTHER_PROGRAMS = {"--ulimit", "--stop-timeout", "--rm", "--now", "--default-ulimit"}
DEADLINE_S = 30.0  # one step of a real server: start, answer, stop


def doc() -> str:
    return DOC.read_text(encoding="utf-8")


def test_every_flag_exists() -> None:
    known = {o.flag for o in options()} | {o.negative_flag for o in options() if o.negative_flag}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", doc()))
    unknown = named - known - OTHER_PROGRAMS
    assert not unknown, f"docs/deployment.md names flags asgiws does not have: {sorted(unknown)}"


def test_every_environment_variable_exists() -> None:
    known = {o.env for o in options()}
    named = set(re.findall(r"\bASGIWS_[A-Z0-9_]+", doc()))
    assert named <= known, sorted(named - known)


def number(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    assert len(found) == 1, (pattern, found)
    return int(found[0])


def test_kubernetes_grace_period_covers_prestop_and_graceful_shutdown() -> None:
    text = doc()
    grace = number(r"terminationGracePeriodSeconds: (\d+)", text)
    pre_stop = number(r'command: \["sleep", "(\d+)"\]', text)
    graceful = number(r'"--timeout-graceful-shutdown", "(\d+)"', text)
    assert pre_stop + graceful < grace
    assert f"{pre_stop} + {graceful} < {grace}" in text  # the page's own sum


def test_systemd_and_docker_stop_timeouts_cover_graceful_shutdown() -> None:
    text = doc()
    graceful = number(r"--timeout-graceful-shutdown (\d+)\n", text)
    assert number(r"TimeoutStopSec=(\d+)", text) > graceful
    docker_graceful = number(r"ASGIWS_TIMEOUT_GRACEFUL_SHUTDOWN=(\d+)", text)
    assert number(r"--stop-timeout (\d+)", text) > docker_graceful
    assert "LimitNOFILE=" in text and "--ulimit nofile=" in text


def test_proxy_idle_timeouts_outlast_the_ping_interval() -> None:
    ping = Config().ws_ping_interval
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    for timeout in re.findall(r"proxy_read_timeout (\d+)s;", nginx):
        assert int(timeout) > ping
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert number(r"timeout tunnel (\d+)s", haproxy) > ping
    annotations = re.findall(r'proxy-(?:read|send)-timeout: "(\d+)"', doc())
    assert annotations and all(int(a) > ping for a in annotations)
    assert f"`--ws-ping-interval` ({ping:g} s)" in doc()


def test_links_lead_to_files() -> None:
    for target in re.findall(r"\]\((\.\./[^)#]+)(?:#[^)]*)?\)", doc()):
        assert (DOC.parent / target).exists(), target


def test_readme_links_here() -> None:
    assert "(docs/deployment.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_connection_diagram_is_mermaid_with_every_step() -> None:
    diagram = doc().split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert diagram.startswith("sequenceDiagram\n")
    for step in ("TCP connect", "GET /ws", "RFC 6455 checks", "websocket.connect",
                 "websocket.accept", "101", "websocket.receive", "websocket.send", "Ping",
                 "Pong", "the client closes", "the app closes", "websocket.disconnect",
                 "TCP FIN"):  # fmt: skip
        assert step in diagram, step


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = doc().split("```ini\n", 1)[1].split("```", 1)[0]
    # The unit's asgiws is this test's own, so that the command it names exists.
    asgiws = Path(sys.executable).parent / "asgiws"
    assert asgiws.exists()
    path = "/srv/chat/.venv/bin/asgiws"
    assert path in unit
    (tmp_path / "chat.service").write_text(unit.replace(path, str(asgiws)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "chat.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # It exits 0 after ignoring a setting it cannot parse, but says so.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result


def test_open_files_section_names_every_way_to_raise_the_limit() -> None:
    section = doc().split("## Open files\n", 1)[1].split("\n## ", 1)[0]
    for how in ("ulimit -n 65536", "ulimit -Hn", "LimitNOFILE=65536", "--ulimit nofile=65536:65536",
                "/etc/security/limits.conf", "/proc/PID/limits", "fs.nr_open",
                "--limit-concurrency"):  # fmt: skip
        assert how in section, how
    assert "[Open files](#open-files)" in doc()  # the checklist at the top leads here


SOFT_LIMIT = 40  # open files the server below may hold: a few dozen connections
UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _upgrade(port: int) -> tuple[socket.socket, str]:
    """One upgrade: the socket and "101", "reset" or "closed" (what the server did with it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    try:
        sock.sendall(UPGRADE)
        head = sock.recv(4096)
    except ConnectionResetError:
        return sock, "reset"
    return sock, "101" if head.startswith(b"HTTP/1.1 101 ") else "closed"


def _lower_open_files() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (SOFT_LIMIT, hard))


def _serve_at_limit(loop: str) -> subprocess.Popen[str]:
    """The demo on a free port, with --loop ``loop``, at a soft open-file limit of SOFT_LIMIT."""
    return subprocess.Popen(
        [sys.executable, "-m", "asgiws", "asgiws.demo:app", "--port", "0", "--loop", loop,
         "--no-access-log"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        preexec_fn=_lower_open_files,
    )  # fmt: skip


def _stop(process: subprocess.Popen[str], held: list[socket.socket]) -> str:
    """Close the client sockets, stop the server, and return the rest of its output."""
    for sock in held:
        sock.close()
    process.terminate()
    output, _ = process.communicate(timeout=DEADLINE_S)
    return output


def _port(process: subprocess.Popen[str]) -> int:
    """The port from the server's startup line."""
    assert process.stdout is not None
    line = process.stdout.readline()
    return int(re.search(r"http://127\.0\.0\.1:(\d+)", line)[1])  # type: ignore[index]


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="needs uvloop")
def test_at_the_open_file_limit_asgiws_resets_new_connections_and_keeps_its_own() -> None:
    """What "Open files" says: asgiws keeps the limit it was given; past it (uvloop) a new
    connection is reset, the open ones stay, and accepting resumes as connections close."""
    process = _serve_at_limit("uvloop")
    held: list[socket.socket] = []
    try:
        port = _port(process)
        limits = Path(f"/proc/{process.pid}/limits").read_text()
        assert re.search(rf"Max open files\s+{SOFT_LIMIT}\s", limits), limits
        outcomes = []
        for _ in range(SOFT_LIMIT + 20):  # bounded: more than the limit can hold
            sock, outcome = _upgrade(port)
            held.append(sock)
            outcomes.append(outcome)
        served = outcomes.count("101")
        assert 0 < served < SOFT_LIMIT, outcomes
        assert outcomes[:served] == ["101"] * served, outcomes  # the first ones, in order
        assert set(outcomes[served:]) <= {"reset", "closed"}, outcomes
        for sock in held[:10]:
            sock.close()
        # Accepting resumes as descriptors free up: bounded attempts, the server closes the
        # first 10 on their TCP FIN as fast as it reads them.
        deadline = time.monotonic() + DEADLINE_S
        while True:
            sock, outcome = _upgrade(port)
            held.append(sock)
            if outcome == "101" or time.monotonic() > deadline:
                break
        assert outcome == "101"
        assert process.poll() is None
    finally:
        output = _stop(process, held)
    assert "Traceback" not in output, output


def test_at_the_open_file_limit_asyncio_logs_one_line_naming_the_limit() -> None:
    """With --loop asyncio, the loop's report of each failed accept() (a traceback per queued
    connection, every second) becomes one warning naming the limit; the connections wait in
    the backlog and are served once descriptors free up; nothing is left after SIGTERM."""
    process = _serve_at_limit("asyncio")
    held: list[socket.socket] = []
    lines: list[str] = []
    try:
        assert process.stdout is not None
        port = _port(process)
        for _ in range(SOFT_LIMIT + 20):  # bounded: more than the limit can hold
            sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
            sock.sendall(UPGRADE)
            held.append(sock)
        # The first accept that fails is reported at once (bounded by the line count and by
        # the socket timeout of the reads below).
        for _ in range(20):
            line = process.stdout.readline()
            lines.append(line)
            if "cannot accept new connections" in line:
                break
        warning = lines[-1]
        assert "cannot accept new connections" in warning, lines
        assert f"limit {SOFT_LIMIT}" in warning and "ulimit -n" in warning, warning
        # The last connections waited in the backlog: freeing descriptors serves one.
        last = held[-1]
        for sock in held[:30]:
            sock.close()
        assert last.recv(4096).startswith(b"HTTP/1.1 101 ")
        assert process.poll() is None
    finally:
        output = _stop(process, held)
    everything = "".join(lines) + output
    assert "Traceback" not in everything, everything
    assert everything.count("cannot accept new connections") <= 2, everything
