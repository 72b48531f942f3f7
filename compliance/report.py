"""Summarise an Autobahn|Testsuite fuzzingclient ``index.json`` and judge it against our goal.

Usage::

    python compliance/report.py compliance/reports/asgiws/index.json [--details]

Prints a table of outcomes per case group (1.* to 13.*, with 12.* and 13.*, the
permessage-deflate cases, split into their sub-groups), the ids of every case that is not OK,
a one-line summary, and exits 0 only when the goal holds:

* every case's ``behavior`` is OK, or INFORMATIONAL (the suite's own verdict for the cases whose
  outcome the RFC leaves open: 7.1.6, 7.13.1, 7.13.2);
* every case's ``behaviorClose`` is OK or INFORMATIONAL;
* at least ``--expected-cases`` cases ran (517 for Autobahn|Testsuite 25.10.1 with ``"*"``).

Why ``behaviorClose`` counts: the suite grades the closing handshake separately from the
messages (``Case.onConnectionLost`` in ``autobahntestsuite/case/case.py``). ``UNCLEAN`` (the
RFC required a clean close) and ``FAILED`` (the wrong endpoint closed, or no close at all) break
a MUST; ``WRONG CODE`` (a close code outside the expected set) and ``FAILED BY CLIENT`` (the
client, not the server, had to drop TCP, which RFC 6455 §7.1.1 says the server SHOULD do) are
SHOULD-level and shown by the suite's HTML report in its non-strict colours. Our goal allows no
NON-STRICT, so any close verdict other than OK or INFORMATIONAL fails it as well.

Exit status: 0 goal met, 1 goal not met, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any

OK = "OK"
NON_STRICT = "NON-STRICT"
FAILED = "FAILED"
UNIMPLEMENTED = "UNIMPLEMENTED"
INFORMATIONAL = "INFORMATIONAL"

# Verdicts that meet the goal, for ``behavior`` and for ``behaviorClose`` alike.
ACCEPTED = frozenset({OK, INFORMATIONAL})
# Case groups whose sub-groups get rows of their own: 12.* and 13.* are permessage-deflate, one
# sub-group per set of negotiated parameters, so a failure usually belongs to one sub-group.
SPLIT_GROUPS = frozenset({"12", "13"})
# Autobahn|Testsuite 25.10.1's fuzzingclient with cases ["*"] runs this many.
EXPECTED_CASES = 517


class ReportError(Exception):
    """The index.json cannot be read or does not have the fuzzingclient's shape."""


@dataclasses.dataclass(frozen=True)
class CaseResult:
    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration_ms: int | None
    reportfile: str | None

    @property
    def key(self) -> tuple[int, ...]:
        return case_key(self.case_id)

    @property
    def meets_goal(self) -> bool:
        return self.behavior in ACCEPTED and self.behavior_close in ACCEPTED

    @property
    def verdict(self) -> str:
        """What went wrong, as listed next to the case id: ``NON-STRICT``, ``close UNCLEAN``..."""
        parts = []
        if self.behavior not in ACCEPTED:
            parts.append(self.behavior)
        if self.behavior_close not in ACCEPTED:
            parts.append(f"close {self.behavior_close}")
        return ", ".join(parts) if parts else OK


def case_key(case_id: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in case_id.split("."))
    except ValueError:
        raise ReportError(f"invalid case id: {case_id!r}") from None


def parse_index(document: Any, agent: str | None = None) -> tuple[str, list[CaseResult]]:
    """Return the agent's name and its case results, sorted in the suite's order."""
    if not isinstance(document, dict) or not document:
        raise ReportError("index.json holds no agent: expected {agent: {case id: result}}")
    if agent is None:
        if len(document) != 1:
            names = ", ".join(sorted(document))
            raise ReportError(f"index.json holds several agents ({names}): choose one with --agent")
        agent = next(iter(document))
    if agent not in document:
        raise ReportError(f"agent {agent!r} not in index.json (it holds {', '.join(document)})")
    cases = document[agent]
    if not isinstance(cases, dict):
        raise ReportError(
            f"agent {agent!r}: expected an object of cases, got {type(cases).__name__}"
        )
    results = []
    for case_id, entry in cases.items():
        if not isinstance(entry, dict):
            raise ReportError(f"case {case_id}: expected an object, got {type(entry).__name__}")
        try:
            behavior = entry["behavior"]
            behavior_close = entry["behaviorClose"]
        except KeyError as exc:
            raise ReportError(f"case {case_id}: missing {exc.args[0]!r}") from None
        results.append(
            CaseResult(
                case_id=case_id,
                behavior=str(behavior),
                behavior_close=str(behavior_close),
                remote_close_code=entry.get("remoteCloseCode"),
                duration_ms=entry.get("duration"),
                reportfile=entry.get("reportfile"),
            )
        )
    results.sort(key=lambda result: result.key)
    return agent, results


@dataclasses.dataclass
class Row:
    name: str
    cases: list[CaseResult] = dataclasses.field(default_factory=list)
    indent: bool = False

    def count(self, behavior: str) -> int:
        return sum(1 for case in self.cases if case.behavior == behavior)

    @property
    def other_failures(self) -> int:
        """Behaviors outside the known set (WRONG CODE, UNCLEAN, NO_CLOSE...): failures too."""
        known = {OK, NON_STRICT, FAILED, UNIMPLEMENTED, INFORMATIONAL}
        return sum(1 for case in self.cases if case.behavior not in known)

    @property
    def close_not_ok(self) -> int:
        return sum(1 for case in self.cases if case.behavior_close not in ACCEPTED)


def group_rows(results: Iterable[CaseResult]) -> list[Row]:
    """One row per top-level group; 12.* and 13.* also get a row per sub-group."""
    rows: dict[str, Row] = {}
    for case in results:
        parts = case.case_id.split(".")
        top = f"{parts[0]}.*"
        rows.setdefault(top, Row(top)).cases.append(case)
        if parts[0] in SPLIT_GROUPS and len(parts) > 2:
            sub = ".".join(parts[:2])
            rows.setdefault(sub, Row(sub, indent=True)).cases.append(case)
    return list(rows.values())


def compress_ids(cases: Sequence[CaseResult]) -> str:
    """``6.4.1..6.4.4 NON-STRICT; 7.5.1 FAILED``: runs of neighbouring cases with one verdict.

    ``cases`` is the full sorted list of a group, so a run stops at any case with another verdict.
    """
    pieces: list[str] = []
    run: list[CaseResult] = []

    def flush() -> None:
        if run:
            span = run[0].case_id if len(run) == 1 else f"{run[0].case_id}..{run[-1].case_id}"
            pieces.append(f"{span} {run[0].verdict}")
            run.clear()

    for case in cases:
        if case.meets_goal:
            flush()
        elif run and run[-1].verdict != case.verdict:
            flush()
            run.append(case)
        else:
            run.append(case)
    flush()
    return "; ".join(pieces)


COLUMNS = ("cases", OK, NON_STRICT, FAILED, UNIMPLEMENTED, "INFO", "close!OK")


def format_table(rows: Sequence[Row]) -> str:
    header = ["group", *COLUMNS, "not OK"]
    lines = []
    for row in rows:
        name = f"  {row.name}" if row.indent else row.name
        # Split groups list their ids on the sub-group rows only.
        split = row.name.endswith(".*") and row.name[:-2] in SPLIT_GROUPS
        ids = "(see below)" if split and not all(c.meets_goal for c in row.cases) else ""
        lines.append(
            [
                name,
                str(len(row.cases)),
                str(row.count(OK)),
                str(row.count(NON_STRICT)),
                str(row.count(FAILED) + row.other_failures),
                str(row.count(UNIMPLEMENTED)),
                str(row.count(INFORMATIONAL)),
                str(row.close_not_ok),
                ids or compress_ids(row.cases),
            ]
        )
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for line in [header, *lines]:
        cells = [line[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(line[1:-1], widths[1:], strict=True)]
        out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out)


@dataclasses.dataclass(frozen=True)
class Verdict:
    met: bool
    reasons: list[str]


def judge(results: Sequence[CaseResult], expected_cases: int) -> Verdict:
    reasons = []
    if len(results) < expected_cases:
        reasons.append(f"only {len(results)} of {expected_cases} cases ran")
    bad = [case for case in results if not case.meets_goal]
    if bad:
        reasons.append(f"{len(bad)} cases not OK")
    return Verdict(met=not reasons, reasons=reasons)


def summary_line(results: Sequence[CaseResult], suite_version: str, label: str, date: str) -> str:
    row = Row("all", list(results))
    return (
        f"Autobahn|Testsuite {suite_version} fuzzingclient: {len(results)} cases, "
        f"{row.count(OK)} OK, {row.count(NON_STRICT)} NON-STRICT, "
        f"{row.count(FAILED) + row.other_failures} FAILED, "
        f"{row.count(UNIMPLEMENTED)} UNIMPLEMENTED, {row.count(INFORMATIONAL)} INFORMATIONAL, "
        f"{row.close_not_ok} behaviorClose not OK ({label}, {date})"
    )


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def case_details(case: CaseResult, report_dir: str) -> list[str]:
    """What the per-case report says went wrong: expected against observed."""
    lines = [f"{case.case_id}: {case.verdict} (remote close code {case.remote_close_code})"]
    if not case.reportfile:
        return [*lines, "    (no per-case report file named in index.json)"]
    path = os.path.join(report_dir, case.reportfile)
    try:
        with open(path, encoding="utf-8") as f:
            detail = json.load(f)
    except (OSError, ValueError) as exc:
        return [*lines, f"    (cannot read {case.reportfile}: {exc})"]
    lines.append(f"    description: {detail.get('description', '')}")
    lines.append(f"    expectation: {detail.get('expectation', '')}")
    if case.behavior not in ACCEPTED:
        lines.append(f"    result: {detail.get('result', '')}")
        lines.append(f"    expected: {_short(detail.get('expected'))}")
        lines.append(f"    received: {_short(detail.get('received'))}")
    if case.behavior_close not in ACCEPTED:
        lines.append(f"    resultClose: {detail.get('resultClose', '')}")
        lines.append(f"    expectedClose: {_short(detail.get('expectedClose'))}")
        observed = {
            key: detail.get(key)
            for key in (
                "closedByMe",
                "droppedByMe",
                "wasClean",
                "wasNotCleanReason",
                "remoteCloseCode",
                "remoteCloseReason",
                "localCloseCode",
                "wasCloseHandshakeTimeout",
                "wasServerConnectionDropTimeout",
            )
        }
        lines.append(f"    observed close: {_short(observed)}")
    return lines


def render(
    agent: str,
    results: Sequence[CaseResult],
    *,
    suite_version: str,
    label: str,
    date: str,
    expected_cases: int,
    report_dir: str | None = None,
    details_limit: int = 0,
) -> tuple[str, Verdict]:
    rows = group_rows(results)
    verdict = judge(results, expected_cases)
    out = [format_table(rows), ""]
    bad = [case for case in results if not case.meets_goal]
    if report_dir is not None and details_limit > 0 and bad:
        shown = bad[:details_limit]
        out.append(f"What the suite saw, for {len(shown)} of the {len(bad)} cases not OK:")
        for case in shown:
            out.extend(case_details(case, report_dir))
        out.append("")
    out.append(summary_line(results, suite_version, label, date))
    if verdict.met:
        out.append(f"goal met: every case OK or INFORMATIONAL (agent {agent})")
    else:
        out.append(f"goal NOT met: {'; '.join(verdict.reasons)} (agent {agent})")
    return "\n".join(out), verdict


def _file_date(path: str) -> str:
    mtime = os.stat(path).st_mtime
    return datetime.datetime.fromtimestamp(mtime, tz=datetime.UTC).date().isoformat()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("index", help="the fuzzingclient's index.json")
    parser.add_argument("--agent", help="agent (server) name in index.json; needed if several")
    parser.add_argument("--label", help="server name and version for the summary (default: agent)")
    parser.add_argument("--suite-version", default="25.10.1", help="Autobahn|Testsuite version")
    parser.add_argument(
        "--date", help="date of the run for the summary (default: index.json's date, UTC)"
    )
    parser.add_argument(
        "--expected-cases",
        type=int,
        default=EXPECTED_CASES,
        help=f"fewer cases than this fails the goal (default: {EXPECTED_CASES}; 0 for a subset)",
    )
    parser.add_argument(
        "--details",
        action="store_true",
        help="also print expected against observed, from the per-case reports",
    )
    parser.add_argument(
        "--details-limit", type=int, default=40, help="at most this many cases in --details"
    )
    args = parser.parse_args(argv)

    try:
        with open(args.index, encoding="utf-8") as f:
            document = json.load(f)
        agent, results = parse_index(document, args.agent)
        date = args.date or _file_date(args.index)
    except (OSError, ValueError, ReportError) as exc:
        print(f"report.py: {args.index}: {exc}", file=sys.stderr)
        return 2

    text, verdict = render(
        agent,
        results,
        suite_version=args.suite_version,
        label=args.label or agent,
        date=date,
        expected_cases=args.expected_cases,
        report_dir=os.path.dirname(args.index) if args.details else None,
        details_limit=args.details_limit,
    )
    print(text)
    return 0 if verdict.met else 1


if __name__ == "__main__":
    sys.exit(main())
