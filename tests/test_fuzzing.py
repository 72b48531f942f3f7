"""The fuzz targets of fuzzing/, without atheris: every seed corpus file (and every crash kept
there as a regression) replayed through its target, so that a target and the code it checks
are both tried in the quick suite. The long runs are fuzzing/README.md's."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

FUZZING = Path(__file__).parent.parent / "fuzzing"
TARGETS = ("request_head", "frames", "handshake")


def target(name: str) -> ModuleType:
    """fuzzing/fuzz_<name>.py, imported by path (fuzzing/ is not a package)."""
    if str(FUZZING) not in sys.path:
        sys.path.insert(0, str(FUZZING))
    module = sys.modules.get(f"fuzz_{name}")
    if module is None:
        spec = importlib.util.spec_from_file_location(f"fuzz_{name}", FUZZING / f"fuzz_{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module


def one_input(name: str) -> Callable[[bytes], None]:
    function: Callable[[bytes], None] = target(name).test_one_input
    return function


CASES = [
    pytest.param(name, path, id=f"{name}/{path.name}")
    for name in TARGETS
    for path in sorted((FUZZING / "corpus" / name).iterdir())
]


def test_every_target_has_a_seed_corpus() -> None:
    for name in TARGETS:
        seeds = list((FUZZING / "corpus" / name).glob("seed-*"))
        assert len(seeds) >= 10, name
        assert all(p.stat().st_size <= 4096 for p in seeds), name  # small files


@pytest.mark.parametrize(("name", "path"), CASES)
def test_the_corpus_replays_clean(name: str, path: Path) -> None:
    one_input(name)(path.read_bytes())


def test_the_request_head_target_fails_on_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is real: make the fast path accept a head h11 would refuse."""
    module = target("request_head")
    import asgiws.http11 as http11
    from asgiws.fasthead import RequestHead

    head = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"

    from asgiws.fasthead import parse_head as real

    def lenient(data: bytes | bytearray, max_size: int) -> RequestHead | None:
        if not bytes(data).startswith(head):
            return real(data, max_size)  # a part of the head: as before
        headers = [(b"host", b"h"), (b"upgrade", b"websocket"), (b"connection", b"Upgrade")]
        headers.append((b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="))
        headers.append((b"sec-websocket-version", b"13"))
        return RequestHead(b"GET", b"/", b"1.1", headers, len(head))

    monkeypatch.setattr(http11, "parse_head", lenient)
    with pytest.raises(AssertionError, match="status 101 whole, 400 in two reads"):
        module.test_one_input(head)


def test_the_frames_target_fails_on_an_unbounded_message(monkeypatch: pytest.MonkeyPatch) -> None:
    module = target("frames")
    seed = (FUZZING / "corpus" / "frames" / "seed-oversize").read_bytes()
    one_input("frames")(seed)  # max_size 125: a 1009 failure, as it should be
    monkeypatch.setattr(module, "make_codec", lambda setting: _LyingCodec())
    with pytest.raises(AssertionError, match="over max_size"):
        one_input("frames")(seed)


class _LyingCodec:
    """A codec that says its limit is 125 bytes and returns a bigger message anyway."""

    max_size = 125
    _buffer = b""
    _message = None

    def read_target(self) -> None:
        return None

    def receive_data(self, data: bytes) -> list[object]:
        from asgiws.frames import Message

        return [Message(b"x" * 200)]


def test_the_handshake_target_checks_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    module = target("handshake")
    seed = (FUZZING / "corpus" / "handshake" / "seed-bad_key").read_bytes()
    one_input("handshake")(seed)
    monkeypatch.setattr(module, "HANDSHAKE_STATUSES", (405, 426))
    with pytest.raises(AssertionError):
        one_input("handshake")(seed)
