"""asgiws.logs: the access line of each kind of cycle, levels, and the handlers it installs."""

from __future__ import annotations

import pytest

from asgiws.protocol import AccessRecord


def test_access_lines(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    from asgiws import logs

    logs.configure_logging("info")
    logs.log_http_access(("127.0.0.1", 51234), "GET", "/health", "1.1", 200, 0.0012)
    logs.log_ws_access(("127.0.0.1", 51234), "/ws", 101, 1000, 2.3151)
    logs.log_ws_access(("127.0.0.1", 51234), "/ws", 403, None, 0.002)
    logs.log_ws_access(("::1", 8080), "/ws", 101, None, 0.5)
    logs.log_http_access("/run/asgiws.sock", "POST", "/a b", "1.0", 404, 0.0)
    logs.log_http_access(None, "GET", '/x"\n\x1b', "1.1", 400, 0.0)
    lines = [line.split(" ACCESS  ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        '127.0.0.1:51234 - "GET /health HTTP/1.1" 200 in 0.001s',
        '127.0.0.1:51234 - "GET /ws" WebSocket 101 closed 1000 in 2.315s',
        '127.0.0.1:51234 - "GET /ws" WebSocket rejected 403 in 0.002s',
        '[::1]:8080 - "GET /ws" WebSocket 101 closed in 0.500s',
        '/run/asgiws.sock - "POST /a b HTTP/1.0" 404 in 0.000s',
        '- - "GET /x\\"\\n\\x1b HTTP/1.1" 400 in 0.000s',
    ]


def test_access_log_off_and_levels(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    import logging

    from asgiws import logs

    logs.configure_logging("debug", access_log=False)
    logs.log_http_access(("127.0.0.1", 1), "GET", "/", "1.1", 200, 0.0)
    logs.error_logger.debug("debug line")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "DEBUG   debug line" in captured.err

    logs.configure_logging("trace")
    logs.configure_logging("trace")  # again: replaces, does not duplicate
    logging.getLogger("asgiws.asyncio").log(logs.TRACE, "frame detail")
    logs.log_http_access(("127.0.0.1", 1), "GET", "/", "1.1", 200, 0.0)
    captured = capsys.readouterr()
    assert captured.err.count("TRACE   frame detail") == 1
    assert captured.out.count('"GET / HTTP/1.1" 200') == 1

    logs.configure_logging("warning")
    logs.log_http_access(("127.0.0.1", 1), "GET", "/", "1.1", 200, 0.0)
    logs.error_logger.info("hidden")
    captured = capsys.readouterr()
    assert captured.out == "" and "hidden" not in captured.err

    with pytest.raises(ValueError, match="invalid log level 'loud'"):
        logs.configure_logging("loud")


def test_every_log_level_choice_is_known() -> None:
    from asgiws import logs
    from asgiws.options import options_by_name

    assert set(options_by_name()["log_level"].spec.choices or ()) == set(logs.LEVELS)


def test_access_lines_from_the_core_records(
    capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    from asgiws import logs

    logs.configure_logging("info")
    client = ("127.0.0.1", 5)
    records = [
        AccessRecord("http", client, "GET", "/a?b=1", "1.1", 200),
        AccessRecord("http", client, "-", "-", "1.1", 400),  # refused: no request line
        AccessRecord("http", client, "GET", "/hang", "1.1", None),  # the client left first
        AccessRecord("websocket", client, "", "/chat", "1.1", 101, close_code=1001),
        AccessRecord("websocket", client, "", "/chat", "1.1", 426),
    ]
    for record in records:
        logs.log_access(record, 0.25)
    lines = [line.split(" ACCESS  ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        '127.0.0.1:5 - "GET /a?b=1 HTTP/1.1" 200 in 0.250s',
        '127.0.0.1:5 - "- - HTTP/1.1" 400 in 0.250s',
        '127.0.0.1:5 - "GET /hang HTTP/1.1" - in 0.250s',
        '127.0.0.1:5 - "GET /chat" WebSocket 101 closed 1001 in 0.250s',
        '127.0.0.1:5 - "GET /chat" WebSocket rejected 426 in 0.250s',
    ]


def test_access_records_from_a_scope() -> None:
    scope = {
        "type": "http", "client": ("::1", 9), "method": "POST", "path": "/p",
        "query_string": b"q=%20", "http_version": "1.0",
    }  # fmt: skip
    assert AccessRecord.of_scope(scope, 201, "a problem") == AccessRecord(
        "http", ("::1", 9), "POST", "/p?q=%20", "1.0", 201, None, "a problem"
    )
    ws = {"type": "websocket", "client": None, "path": "/ws", "query_string": b""}
    assert AccessRecord.of_scope(ws, 101) == AccessRecord("websocket", None, "", "/ws", "1.1", 101)
    assert "status=101" in repr(AccessRecord.of_scope(ws, 101))


def test_an_access_record_tells_its_kind_without_building_its_fields() -> None:
    from asgiws.protocol import AccessRecord

    ws_scope = {"type": "websocket", "path": "/ws", "client": ("127.0.0.1", 5)}
    http_scope = {"type": "http", "path": "/", "method": "GET", "http_version": "1.1"}
    assert AccessRecord.of_scope(ws_scope, 101).kind == "websocket"
    record = AccessRecord.of_scope(http_scope, 200)
    assert record.kind == "http" and record.scope is http_scope
    refused = AccessRecord.of_head("websocket", None, b"GET", "/x", b"1.1", 400)
    assert refused.kind == "websocket" and refused.scope is None
    assert refused.fields == ("websocket", None, "GET", "/x", "1.1")
