"""A headless Chromium driven over the DevTools protocol, for the browser tests.

``--dump-dom`` with a virtual-time budget was the first way the browser test read the page, and
it flaked on a slow machine: virtual time does not wait for WebSocket traffic, so the DOM could be
dumped before the page had rendered the message it was waiting for. Here the test asks the page
itself: an expression evaluated in the page returns a promise that settles when the condition
holds (a ``MutationObserver`` watches the DOM) or rejects at a deadline, so nothing sleeps and
nothing polls.

Chromium prints ``DevTools listening on ws://...`` on stderr once it listens; a thread drains
stderr (so a chatty browser never blocks on a full pipe) and hands that line over.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

LISTENING = "DevTools listening on "


class DevToolsError(AssertionError):
    pass


class Page:
    """One page target, attached with a flat session on the browser's DevTools socket."""

    def __init__(self, socket: ClientConnection, session: str, stderr: list[str]) -> None:
        self.socket = socket
        self.session = session
        self.stderr = stderr

    def evaluate(self, expression: str, timeout_s: float) -> Any:
        """The value of ``expression`` in the page, awaited if it is a promise."""
        result = call(
            self.socket,
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout_s,
            self.session,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise DevToolsError(f"the page raised: {text}")
        return result["result"].get("value")


_ids = itertools.count(1)


def call(
    socket: ClientConnection,
    method: str,
    params: dict[str, Any],
    timeout_s: float,
    session: str | None = None,
) -> dict[str, Any]:
    """Send one DevTools command and return its result; events in between are skipped."""
    ident = next(_ids)
    message: dict[str, Any] = {"id": ident, "method": method, "params": params}
    if session is not None:
        message["sessionId"] = session
    socket.send(json.dumps(message))
    # Each recv waits at most timeout_s; the browser sends a bounded number of events per
    # command, and the id answers it.
    for _ in range(10_000):
        reply = json.loads(socket.recv(timeout=timeout_s))
        if reply.get("id") == ident:
            if "error" in reply:
                raise DevToolsError(f"{method}: {reply['error']}")
            result: dict[str, Any] = reply["result"]
            return result
    raise DevToolsError(f"{method}: no answer among 10,000 messages")


def wait_event(socket: ClientConnection, method: str, session: str, timeout_s: float) -> None:
    """Read DevTools messages until the event ``method`` arrives for ``session``."""
    for _ in range(10_000):
        event = json.loads(socket.recv(timeout=timeout_s))
        if event.get("method") == method and event.get("sessionId") == session:
            return
    raise DevToolsError(f"no {method} among 10,000 messages")


@contextmanager
def chromium_page(browser: str, url: str, profile: Path, timeout_s: float) -> Iterator[Page]:
    """Start a headless Chromium, load ``url`` in a new page, and yield that page."""
    process = subprocess.Popen(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr: list[str] = []
    endpoint: list[str] = []
    listening = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            stderr.append(line)
            if line.startswith(LISTENING) and not endpoint:
                endpoint.append(line[len(LISTENING) :].strip())
                listening.set()
        listening.set()  # stderr closed: the browser is gone

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        if not listening.wait(timeout_s) or not endpoint:
            raise DevToolsError("chromium did not start listening:\n" + "".join(stderr)[-2000:])
        with connect(endpoint[0], open_timeout=timeout_s, max_size=None) as socket:
            blank = {"url": "about:blank"}
            target = call(socket, "Target.createTarget", blank, timeout_s)["targetId"]
            attach = {"targetId": target, "flatten": True}
            session = call(socket, "Target.attachToTarget", attach, timeout_s)["sessionId"]
            # Navigate only once attached, so the test's expressions run in the loaded page
            # and not in a blank one that the navigation then replaces.
            call(socket, "Page.enable", {}, timeout_s, session)
            navigated = call(socket, "Page.navigate", {"url": url}, timeout_s, session)
            if "errorText" in navigated:
                raise DevToolsError(f"navigating to {url}: {navigated['errorText']}")
            wait_event(socket, "Page.loadEventFired", session, timeout_s)
            yield Page(socket, session, stderr)
    finally:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(timeout_s)
        if process.stderr is not None:
            process.stderr.close()


def wait_for_expression(condition: str, timeout_s: float) -> str:
    """A page expression: a promise that resolves once ``condition`` (a JS expression) holds.

    It checks at once and again on every DOM change; it rejects after ``timeout_s`` with the
    page's body text, so a failure says what the page showed.
    """
    ms = int(timeout_s * 1000)
    return f"""new Promise((resolve, reject) => {{
  const check = () => {{ try {{ return Boolean({condition}); }} catch (e) {{ return false; }} }};
  if (check()) {{ resolve(true); return; }}
  const observer = new MutationObserver(() => {{
    if (check()) {{ observer.disconnect(); clearTimeout(timer); resolve(true); }}
  }});
  observer.observe(document, {{subtree: true, childList: true, attributes: true,
                               characterData: true}});
  const timer = setTimeout(() => {{
    observer.disconnect();
    reject(new Error("not within {ms} ms; the page shows: " +
                     (document.body ? document.body.innerText : "(no body)")));
  }}, {ms});
}})"""
