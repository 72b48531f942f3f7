#!/usr/bin/env bash
# Run Autobahn|Testsuite's fuzzingclient (all 517 cases, 1.* to 13.*) against a server under
# test and judge the result with compliance/report.py.
#
#   compliance/autobahn.sh [--server asgiws|asgiws-zlib|uvicorn-wsproto|uvicorn-websockets]
#                          [--cases PATTERN[,PATTERN...]]
#
# asgiws-zlib is asgiws with --ws-deflate-zlib zlib (CPython's zlib streams; plain asgiws takes
# zlib-ng where it is installed).
#
# Environment:
#   PYTHON             Python 3 that runs the server under test, the helper venv and report.py
#                      (default: python3). It must be able to import the server (asgiws, or
#                      uvicorn for the uvicorn-* servers).
#   AUTOBAHN_SERVER    same as --server (default: asgiws)
#   AUTOBAHN_CASES     same as --cases; anything but "*" is a partial run for debugging, and then
#                      report.py does not require all 517 cases
#   AUTOBAHN_TIMEOUT   seconds the whole wstest run may take (default: 2700)
#   PYTHON2            the CPython 2.7 interpreter for the suite (default: `pyenv prefix 2.7.18`,
#                      else python2.7 on PATH)
#
# The suite is Python 2.7 code: it lives in a virtualenv under .cache/autobahn-venv, built once
# from compliance/requirements-autobahn.txt and reused while its marker matches that file.
# Reports go to compliance/reports/<server>/ (index.json, index.html, one file per case).
# Exit status: report.py's (0 only when the goal holds), or non-zero when a step fails.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-python3}
SERVER=${AUTOBAHN_SERVER:-asgiws}
CASES=${AUTOBAHN_CASES:-*}
RUN_TIMEOUT=${AUTOBAHN_TIMEOUT:-2700}
SUITE_VERSION=25.10.1
EXPECTED_CASES=517
# Autobahn's 9.* cases send messages of up to 16 MiB; the server must accept them.
MAX_SIZE=16777216
STARTUP_TIMEOUT=30   # seconds for the server to accept connections
STOP_TIMEOUT=15      # seconds for the server to exit after SIGTERM, before SIGKILL

CACHE=$ROOT/.cache
VENV=$CACHE/autobahn-venv
HELPER=$CACHE/virtualenv-helper
REQUIREMENTS=$ROOT/compliance/requirements-autobahn.txt
MARKER=$VENV/.asgiws-autobahn-complete

say() { printf '[autobahn] %s\n' "$*" >&2; }
# pip's noise about this machine's extra package indexes and Python 2.7's end of life.
pip_noise_filter() { grep -v -e 'is ignored: it is neither' -e 'DEPRECATION: Python 2.7' >&2 || true; }
die() { say "error: $*"; exit 2; }

parse_args() {
    while (($#)); do
        case $1 in
            --server) SERVER=${2:?--server needs a value}; shift 2 ;;
            --server=*) SERVER=${1#*=}; shift ;;
            --cases) CASES=${2:?--cases needs a value}; shift 2 ;;
            --cases=*) CASES=${1#*=}; shift ;;
            -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument: $1 (see --help)" ;;
        esac
    done
}

# -- The Python 2.7 environment --------------------------------------------------------------------

find_python2() {
    if [[ -n ${PYTHON2:-} ]]; then
        printf '%s\n' "$PYTHON2"
    elif command -v pyenv >/dev/null && prefix=$(pyenv prefix 2.7.18 2>/dev/null); then
        printf '%s\n' "$prefix/bin/python2.7"
    elif command -v python2.7 >/dev/null; then
        command -v python2.7
    else
        die "no CPython 2.7 found: set PYTHON2, or install 2.7.18 with pyenv"
    fi
}

# What the marker records: the pinned requirements and the interpreter they were installed for.
# The marker is written only after the import check below passed, so its presence with this
# content means the environment is complete.
wanted_marker() {
    sha256sum "$REQUIREMENTS" | cut -d' ' -f1
    "$1" -c 'import sys; print(sys.version.split()[0])'
}

check_suite() {
    # Import everything a fuzzingclient run touches, compiled accelerators included.
    PYTHONWARNINGS=ignore "$VENV/bin/python" - "$SUITE_VERSION" <<'EOF'
import sys
import autobahn, autobahntestsuite, twisted, wsaccel, ujson
import autobahntestsuite.fuzzing, autobahntestsuite.wstest, autobahn.twisted.websocket
assert autobahntestsuite.version == sys.argv[1], autobahntestsuite.version
EOF
}

ensure_suite() {
    local python2
    python2=$(find_python2)
    [[ -x $python2 ]] || die "CPython 2.7 not executable: $python2"
    local want
    want=$(wanted_marker "$python2")
    if [[ -f $MARKER && $(cat "$MARKER") == "$want" ]] && check_suite 2>/dev/null; then
        return
    fi
    say "building the Autobahn|Testsuite $SUITE_VERSION environment in .cache/autobahn-venv (about a minute)"
    mkdir -p "$CACHE"
    if ! "$HELPER/bin/python" -c 'import virtualenv, sys; sys.exit(virtualenv.__version__ != "20.21.1")' 2>/dev/null; then
        rm -rf "$HELPER"
        "$PYTHON" -m venv "$HELPER"
        # virtualenv 20.21.1 is the last release that can still create Python 2.7 environments.
        "$HELPER/bin/python" -m pip install --quiet virtualenv==20.21.1 2> >(pip_noise_filter)
    fi
    rm -rf "$VENV"
    "$HELPER/bin/python" -m virtualenv --quiet --python "$python2" "$VENV"
    PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install --quiet --no-warn-script-location \
        -r "$REQUIREMENTS" 2> >(pip_noise_filter)
    check_suite || die "the Autobahn|Testsuite environment does not import; see the errors above"
    printf '%s\n' "$want" >"$MARKER"
}

# -- The server under test -------------------------------------------------------------------------

free_port() {
    "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

server_command() {
    local port=$1
    case $SERVER in
        asgiws)
            SERVER_CMD=("$PYTHON" -m asgiws compliance.echo_app:app --host 127.0.0.1 --port "$port"
                --ws-max-size "$MAX_SIZE" --log-level warning --no-access-log) ;;
        asgiws-zlib)
            # The same with CPython's zlib streams, where zlib-ng is installed and 'auto' would
            # take it (--ws-deflate-zlib): the 12.* and 13.* cases then check the other library.
            SERVER_CMD=("$PYTHON" -m asgiws compliance.echo_app:app --host 127.0.0.1 --port "$port"
                --ws-max-size "$MAX_SIZE" --log-level warning --no-access-log
                --ws-deflate-zlib zlib) ;;
        uvicorn-wsproto|uvicorn-websockets)
            SERVER_CMD=("$PYTHON" -m uvicorn compliance.echo_app:app --host 127.0.0.1 --port "$port"
                --ws "${SERVER#uvicorn-}" --ws-max-size "$MAX_SIZE" --log-level warning
                --no-access-log) ;;
        *) die "unknown server: $SERVER (asgiws, asgiws-zlib, uvicorn-wsproto or uvicorn-websockets)" ;;
    esac
}

server_label() {
    case $SERVER in
        asgiws) "$PYTHON" -c 'import asgiws; print("asgiws " + asgiws.__version__)' ;;
        asgiws-zlib)
            "$PYTHON" -c 'import asgiws; print("asgiws " + asgiws.__version__ + ", zlib")' ;;
        uvicorn-*)
            "$PYTHON" -c 'import sys, uvicorn, importlib.metadata as m
ws = sys.argv[1]
print("uvicorn %s with %s %s" % (uvicorn.__version__, ws, m.version(ws)))' "${SERVER#uvicorn-}" ;;
    esac
}

SERVER_PID=
WSTEST_PID=

stop_pid() {
    # SIGTERM, then a bounded wait for the exit, then SIGKILL.
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid still running ${STOP_TIMEOUT}s after SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    if [[ -n $WSTEST_PID ]]; then stop_pid "$WSTEST_PID"; fi
    if [[ -n $SERVER_PID ]]; then stop_pid "$SERVER_PID"; fi
}
trap cleanup EXIT
trap 'say "interrupted: stopping the server and wstest"; exit 130' INT
trap 'say "terminated: stopping the server and wstest"; exit 143' TERM

wait_accepting() {
    # Poll until the port accepts a TCP connection, the server exits, or the deadline passes.
    local port=$1 deadline=$((SECONDS + STARTUP_TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited before accepting connections"
        if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    die "the server did not accept connections on 127.0.0.1:$port within ${STARTUP_TIMEOUT}s"
}

write_spec() {
    # The fuzzingclient spec: this one server, the chosen cases, no exclusions.
    "$PYTHON" - "$1" "$SERVER" "$2" "$3" "$CASES" <<'EOF'
import json, sys
path, agent, port, outdir, cases = sys.argv[1:]
spec = {
    "outdir": outdir,
    "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{port}"}],
    "cases": cases.split(","),
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
EOF
}

# -- The run ---------------------------------------------------------------------------------------

# Everything runs inside main, which bash parses whole before it starts: editing this file
# during a run cannot change what the run does next.
main() {
    parse_args "$@"
    server_command 0 # validate --server before the slow steps
    ensure_suite

    LABEL=$(server_label) || die "$PYTHON cannot import the server for --server $SERVER"
    OUTDIR=compliance/reports/$SERVER
    rm -rf "$OUTDIR"
    mkdir -p "$OUTDIR"

    PORT=$(free_port)
    server_command "$PORT"
    say "starting $LABEL on 127.0.0.1:$PORT: ${SERVER_CMD[*]}"
    "${SERVER_CMD[@]}" >"$OUTDIR/server.log" 2>&1 &
    SERVER_PID=$!
    wait_accepting "$PORT"

    SPEC=$OUTDIR/fuzzingclient.json
    write_spec "$SPEC" "$PORT" "$OUTDIR"

    say "running wstest -m fuzzingclient (cases \"$CASES\"; about 20 minutes for all; log: $OUTDIR/wstest.log)"
    started=$SECONDS
    # wstest's own stdout (the case list, then nothing until the end) goes to the log; the wrapper
    # prints one progress line per case group to stderr.
    PYTHONWARNINGS=ignore timeout --signal=TERM --kill-after=10 "$RUN_TIMEOUT" \
        "$VENV/bin/python" compliance/wstest_progress.py -m fuzzingclient -s "$SPEC" \
        >"$OUTDIR/wstest.log" &
    WSTEST_PID=$!
    wstest_status=0
    wait "$WSTEST_PID" || wstest_status=$?
    WSTEST_PID=
    elapsed=$((SECONDS - started))
    say "wstest finished in $((elapsed / 60))m$((elapsed % 60))s with status $wstest_status"

    server_status=running
    kill -0 "$SERVER_PID" 2>/dev/null || server_status="exited early"
    stop_pid "$SERVER_PID"
    SERVER_PID=
    if [[ $server_status != running ]]; then
        say "the server had exited before the run ended; its log:"
        tail -n 40 "$OUTDIR/server.log" >&2
    fi
    if [[ -s $OUTDIR/server.log ]]; then
        say "the server logged $(wc -l <"$OUTDIR/server.log") lines: $OUTDIR/server.log"
    fi
    ((wstest_status == 0)) || die "wstest failed (status $wstest_status); see $OUTDIR/wstest.log"
    [[ -f $OUTDIR/index.json ]] || die "wstest wrote no $OUTDIR/index.json"

    expected=$EXPECTED_CASES
    [[ $CASES == "*" ]] || expected=0
    "$PYTHON" compliance/report.py "$OUTDIR/index.json" --agent "$SERVER" --label "$LABEL" \
        --suite-version "$SUITE_VERSION" --expected-cases "$expected" --details
}

main "$@"
