"""Fast tests of compliance/report.py on small fabricated index.json documents."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from compliance import report

pytestmark = pytest.mark.tooling


def entry(behavior: str = "OK", close: str = "OK", code: int | None = 1000) -> dict[str, Any]:
    return {
        "behavior": behavior,
        "behaviorClose": close,
        "duration": 3,
        "remoteCloseCode": code,
        "reportfile": None,
    }


def index(cases: dict[str, dict[str, Any]], agent: str = "asgiws") -> dict[str, Any]:
    return {agent: cases}


def write_index(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "index.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def test_parse_sorts_case_ids_numerically() -> None:
    agent, results = report.parse_index(
        index({"10.1.1": entry(), "1.1.10": entry(), "1.1.2": entry(), "9.1.1": entry()})
    )
    assert agent == "asgiws"
    assert [r.case_id for r in results] == ["1.1.2", "1.1.10", "9.1.1", "10.1.1"]


def test_parse_picks_the_named_agent_among_several() -> None:
    document = {"a": {"1.1.1": entry()}, "b": {"1.1.1": entry("FAILED")}}
    with pytest.raises(report.ReportError, match="several agents"):
        report.parse_index(document)
    agent, results = report.parse_index(document, "b")
    assert agent == "b"
    assert results[0].behavior == "FAILED"
    with pytest.raises(report.ReportError, match=r"'c' not in index\.json"):
        report.parse_index(document, "c")


@pytest.mark.parametrize(
    "document, message",
    [
        ({}, "no agent"),
        ([], "no agent"),
        ({"a": []}, "expected an object of cases"),
        ({"a": {"1.1.1": "OK"}}, "case 1.1.1: expected an object"),
        ({"a": {"1.1.1": {"behavior": "OK"}}}, "missing 'behaviorClose'"),
        ({"a": {"1.x.1": entry()}}, "invalid case id"),
    ],
)
def test_parse_rejects_malformed_documents(document: Any, message: str) -> None:
    with pytest.raises(report.ReportError, match=message):
        report.parse_index(document)


def test_verdicts_of_behavior_and_close() -> None:
    def result(behavior: str, close: str) -> report.CaseResult:
        return report.CaseResult("1.1.1", behavior, close, 1000, 1, None)

    assert result("OK", "OK").meets_goal
    assert result("INFORMATIONAL", "INFORMATIONAL").meets_goal
    assert not result("NON-STRICT", "OK").meets_goal
    assert not result("UNIMPLEMENTED", "OK").meets_goal
    # A close graded anything but OK fails the goal even when the messages were right.
    for close in ("WRONG CODE", "UNCLEAN", "FAILED BY CLIENT", "FAILED"):
        case = result("OK", close)
        assert not case.meets_goal
        assert case.verdict == f"close {close}"
    assert result("FAILED", "UNCLEAN").verdict == "FAILED, close UNCLEAN"


def test_group_rows_split_12_and_13_into_sub_groups() -> None:
    _, results = report.parse_index(
        index(
            {
                "1.1.1": entry(),
                "1.2.1": entry(),
                "12.1.1": entry(),
                "12.2.1": entry(),
                "13.1.1": entry(),
                "9.1.1": entry(),
            }
        )
    )
    rows = report.group_rows(results)
    assert [(row.name, len(row.cases), row.indent) for row in rows] == [
        ("1.*", 2, False),
        ("9.*", 1, False),
        ("12.*", 2, False),
        ("12.1", 1, True),
        ("12.2", 1, True),
        ("13.*", 1, False),
        ("13.1", 1, True),
    ]


def test_compress_ids_joins_runs_of_one_verdict() -> None:
    _, results = report.parse_index(
        index(
            {
                "6.4.1": entry("NON-STRICT"),
                "6.4.2": entry("NON-STRICT"),
                "6.4.3": entry("NON-STRICT"),
                "6.4.4": entry("FAILED"),
                "6.5.1": entry(),
                "6.5.2": entry("NON-STRICT"),
                "6.6.1": entry("OK", "UNCLEAN"),
            }
        )
    )
    assert report.compress_ids(results) == (
        "6.4.1..6.4.3 NON-STRICT; 6.4.4 FAILED; 6.5.2 NON-STRICT; 6.6.1 close UNCLEAN"
    )


def full_index(**overrides: dict[str, Any]) -> dict[str, Any]:
    """517 OK cases shaped like the suite's, with some replaced."""
    cases = {f"{group}.1.{n}": entry() for group in range(1, 14) for n in range(1, 40)}
    cases.update({f"13.2.{n}": entry() for n in range(1, 11)})
    assert len(cases) == 517
    cases.update(overrides)
    return index(cases)


def test_render_goal_met_with_informational_cases() -> None:
    document = full_index(**{"7.1.6": entry("INFORMATIONAL", "INFORMATIONAL")})
    agent, results = report.parse_index(document)
    text, verdict = report.render(
        agent,
        results,
        suite_version="25.10.1",
        label="asgiws 0.1.0",
        date="2026-11-22",
        expected_cases=517,
    )
    assert verdict.met
    assert (
        "Autobahn|Testsuite 25.10.1 fuzzingclient: 517 cases, 516 OK, 0 NON-STRICT, 0 FAILED, "
        "0 UNIMPLEMENTED, 1 INFORMATIONAL, 0 behaviorClose not OK (asgiws 0.1.0, 2026-11-22)"
    ) in text
    assert "goal met" in text


def test_render_lists_every_case_not_ok() -> None:
    document = full_index(
        **{
            "6.1.3": entry("NON-STRICT"),
            "12.1.2": entry("UNIMPLEMENTED"),
            "12.1.3": entry("UNIMPLEMENTED"),
            "13.2.5": entry("OK", "WRONG CODE", 1002),
            "2.1.7": entry("WRONG CODE"),
        }
    )
    agent, results = report.parse_index(document)
    text, verdict = report.render(
        agent, results, suite_version="25.10.1", label="x", date="d", expected_cases=517
    )
    assert not verdict.met
    assert verdict.reasons == ["5 cases not OK"]
    lines = text.splitlines()
    row = {line.split()[0]: line.split() for line in lines[1:] if line.strip()}
    # group cases OK NON-STRICT FAILED UNIMPLEMENTED INFO close!OK
    assert row["2.*"][:8] == ["2.*", "39", "38", "0", "1", "0", "0", "0"]
    assert text.count("2.1.7 WRONG CODE") == 1
    assert row["6.*"][:8] == ["6.*", "39", "38", "1", "0", "0", "0", "0"]
    assert row["12.*"][-2:] == ["(see", "below)"]
    assert row["12.1"][:8] == ["12.1", "39", "37", "0", "0", "2", "0", "0"]
    assert "12.1.2..12.1.3 UNIMPLEMENTED" in text
    assert "13.2.5 close WRONG CODE" in text
    assert "1 behaviorClose not OK" in text
    assert "goal NOT met: 5 cases not OK" in text


def test_too_few_cases_fail_the_goal() -> None:
    agent, results = report.parse_index(index({"1.1.1": entry()}))
    _, verdict = report.render(
        agent, results, suite_version="25.10.1", label="x", date="d", expected_cases=517
    )
    assert verdict.reasons == ["only 1 of 517 cases ran"]
    _, verdict = report.render(
        agent, results, suite_version="25.10.1", label="x", date="d", expected_cases=0
    )
    assert verdict.met


def test_main_exit_codes_and_details(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case_report = {
        "description": "Send text message with payload 0.",
        "expectation": "Receive echo'ed text message (with empty payload). Clean close.",
        "result": "Actual events differ from any expected.",
        "expected": {"OK": [["message", "", False]]},
        "received": [],
        "resultClose": "The spec requires the connection to be failed cleanly here",
        "expectedClose": {"closedByMe": True, "closeCode": [1000], "requireClean": True},
        "closedByMe": True,
        "wasClean": False,
        "remoteCloseCode": None,
    }
    (tmp_path / "asgiws_case_1_1_1.json").write_text(json.dumps(case_report), encoding="utf-8")
    bad = entry("FAILED", "UNCLEAN", None)
    bad["reportfile"] = "asgiws_case_1_1_1.json"
    path = write_index(tmp_path, index({"1.1.1": bad, "1.1.2": entry()}))
    assert report.main([path, "--expected-cases", "2", "--details", "--date", "2026-01-02"]) == 1
    out = capsys.readouterr().out
    assert "1.1.1: FAILED, close UNCLEAN (remote close code None)" in out
    assert "result: Actual events differ from any expected." in out
    assert 'expected: {"OK": [["message", "", false]]}' in out
    assert "received: []" in out
    assert "resultClose: The spec requires the connection to be failed cleanly here" in out
    assert '"wasClean": false' in out
    assert "(asgiws, 2026-01-02)" in out

    good = write_index(tmp_path, index({"1.1.1": entry()}))
    assert report.main([good, "--expected-cases", "1"]) == 0
    assert report.main([good]) == 1  # 1 of 517

    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    assert report.main([str(broken)]) == 2
    assert report.main([os.fspath(tmp_path / "missing.json")]) == 2
    assert "report.py:" in capsys.readouterr().err
