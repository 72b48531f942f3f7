"""docs/deployment.md says only what is so: every asgiws flag it names exists, the numbers of its
examples that depend on each other agree, the proxies' idle timeouts in deploy/ outlast the ping
interval, and its links lead to files of the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asgiws.config import Config
from asgiws.options import options

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "deployment.md"

# Flags of other programs in the page's commands: docker run's and systemctl's.
OTHER_PROGRAMS = {"--ulimit", "--stop-timeout", "--rm", "--now"}


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
