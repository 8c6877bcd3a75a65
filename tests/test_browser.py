"""The report page (index.html) opened in a real headless browser: Debian's Chromium, driven through
the DevTools protocol over a small standard-library websocket client.

Checks: every figure loads (naturalWidth > 0), the page asks for nothing outside itself (it must work
offline), no console errors or uncaught exceptions, the summary shows the right counts, failing checks
come first, and clicking a column header sorts the table (again: reverses it). A screenshot is taken
(also written to $ISOMETRY_SCREENSHOT_DIR when set, to look at).

Skipped, with the reason, only when no Chromium binary exists (``.ci/run`` installs it with
``apt-get install -y chromium``); ``$ISOMETRY_CHROMIUM`` names another binary.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from isometry.report.core import Context, PartResult, check, run_parts, write_report


def chromium_binary() -> str | None:
    """The Chromium to use: $ISOMETRY_CHROMIUM, else ``chromium`` on PATH or /usr/bin/chromium."""
    env = os.environ.get("ISOMETRY_CHROMIUM")
    if env:
        return env
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


class WebSocket:
    """A minimal RFC 6455 client (text frames, fragmentation, ping/pong): enough for the DevTools protocol."""

    def __init__(self, url: str, timeout: float = 30.0):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        status = bytes(self.buf[:end]).split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise ConnectionError(f"websocket handshake refused: {status!r}")
        del self.buf[:end]

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the browser closed the connection")
        self.buf += chunk

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _frame(self, opcode: int, data: bytes) -> None:
        head = bytearray([0x80 | opcode])
        n = len(data)
        if n < 126:
            head.append(0x80 | n)
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        masked = (int.from_bytes(data, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.sock.sendall(bytes(head) + mask + masked)

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def recv(self) -> str:
        message = bytearray()
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(self._read(2), "big")
            elif n == 127:
                n = int.from_bytes(self._read(8), "big")
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("the browser closed the websocket")
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Browser:
    """Headless Chromium with one page, driven through the DevTools protocol."""

    FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-port=0",
             "--window-size=1280,900"]

    def __init__(self, binary: str, profile: Path, timeout: float = 60.0):
        self.timeout = timeout
        self.proc = subprocess.Popen([binary, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        targets = []
        while not targets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if not targets:
                if time.monotonic() > deadline:
                    raise TimeoutError("chromium opened no page")
                time.sleep(0.05)
        self.ws = WebSocket(targets[0]["webSocketDebuggerUrl"], timeout=timeout)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == me:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while True:
            for e in self.events:
                if e.get("method") == method:
                    return e
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} event")
            self.events.append(json.loads(self.ws.recv()))

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def open(self, path: Path) -> None:
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element."""
        box = self.eval(f"(() => {{const e = document.querySelector({json.dumps(selector)}); e.scrollIntoView();"
                        "const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                out.append(f"exception: {p['exceptionDetails'].get('text')} {p['exceptionDetails'].get('exception', {})}")
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def requests(self) -> list[str]:
        """URLs the page asked for (Network.requestWillBeSent)."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> bytes:
        h = self.eval("document.documentElement.scrollHeight")
        r = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                      clip={"x": 0, "y": 0, "width": 1280, "height": min(int(h), 6000), "scale": 1})
        data = base64.b64decode(r["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                self.proc.kill()
                self.proc.wait()
            self.proc.stderr.close()


@pytest.fixture
def browser(tmp_path):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary: install Debian's chromium (apt-get install -y chromium; .ci/run does) "
                    "or set ISOMETRY_CHROMIUM")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    b = Browser(binary, profile)
    try:
        yield b
    finally:
        b.close()


def _figure(ctx, name, colour):
    from isometry.plotting import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(3, 2), layout="constrained")
    ax.plot([0, 1, 2], [0, 1, 4], color=colour)
    ax.set(xlabel="x", ylabel="y", title=name)
    return str(save_figure(fig, ctx.figure_path(name), dpi=60))


def _synthetic_report(out: Path) -> dict:
    """Three parts: one with two figures and a failing check, one passing, one that raises."""
    def alpha(ctx):
        return PartResult("alpha", "Part alpha", "Alpha's text.", [_figure(ctx, "a1", "C0"), _figure(ctx, "a2", "C1")],
                          [check("alpha small", 1.0, 1.01, 0.1), check("alpha fails", 2.0, 3.5, 0.1),
                           check("alpha big", 100.0, 100.5, 1.0), check("alpha middle", 5.0, 5.2, 0.5)],
                          captions=["Look at the blue line.", "Look at the orange line."])

    def beta(ctx):
        return PartResult("beta", "Part beta <b>escaped</b>", "Beta's text.", [_figure(ctx, "b1", "C2")],
                          [check("beta ok", 0.0, 0.0, 0.0)], captions=["Beta's figure."])

    def broken(ctx):
        raise RuntimeError("boom")

    ctx = Context(out=out, scale="quick", progress=False)
    results = run_parts(ctx, [("alpha", alpha), ("beta", beta), ("broken", broken)], log=lambda m: None)
    return write_report(ctx, results, wall_seconds=12.5)


def _column(b: Browser, table: str, col: int) -> list[str]:
    return b.eval(f"Array.from(document.querySelectorAll('#{table} tbody tr')).map(r => r.cells[{col}].textContent)")


def test_report_page_in_a_real_browser(browser, tmp_path):
    out = tmp_path / "report"
    summary = _synthetic_report(out)
    assert (summary["n_checks"], summary["n_passed"], summary["n_failed"]) == (6, 4, 2)
    browser.open(out / "index.html")

    # every figure loads, and the page asks for nothing outside itself
    images = browser.eval("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
    assert len(images) == 3 and all(done and width > 0 for done, width, _ in images), images
    assert [alt for *_, alt in images] == ["Look at the blue line.", "Look at the orange line.", "Beta's figure."]
    assert browser.eval("Array.from(document.querySelectorAll('figcaption')).map(f => f.textContent)") == [
        "Look at the blue line.", "Look at the orange line.", "Beta's figure."]
    outside = [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
    assert outside == []
    assert browser.problems() == []

    # the summary at the top shows the right counts, the time and the machine
    assert browser.eval("document.getElementById('n-passed').textContent") == "4"
    assert browser.eval("document.getElementById('n-checks').textContent") == "6"
    assert browser.eval("document.getElementById('n-failed').textContent") == "2"
    assert browser.eval("document.getElementById('verdict').className") == "verdict bad"
    machine = browser.eval("document.getElementById('machine').textContent")
    assert "CPU" in machine and "python" in machine and "numpy" in machine
    assert "this run took 12.5 s" in browser.eval("document.getElementById('time').textContent")
    assert browser.eval("document.getElementById('scale').textContent") == "quick, seed 0"
    # the summary comes before the parts; the failing checks are listed first, with their part
    assert browser.eval("document.getElementById('summary').compareDocumentPosition("
                        "document.getElementById('part-alpha')) & Node.DOCUMENT_POSITION_FOLLOWING") > 0
    assert _column(browser, "failing-checks", 0) == ["alpha", "broken"]
    assert _column(browser, "checks-part-alpha", 0)[0] == "alpha fails"  # failing first within a part too
    assert browser.eval("document.querySelector('#part-beta h2').textContent") == "Part beta <b>escaped</b>"

    # clicking a header sorts by that column (numbers by value), clicking again reverses
    table = "checks-part-alpha"
    browser.click(f"#{table} thead th:nth-child(3) button")  # measured
    assert _column(browser, table, 2) == ["1.01", "3.5", "5.2", "100.5"]
    assert browser.eval(f"document.querySelector('#{table} thead th:nth-child(3)').getAttribute('aria-sort')") == \
        "ascending"
    browser.click(f"#{table} thead th:nth-child(3) button")
    assert _column(browser, table, 2) == ["100.5", "5.2", "3.5", "1.01"]
    browser.click(f"#{table} thead th:nth-child(1) button")  # claim, alphabetically
    assert _column(browser, table, 0) == ["alpha big", "alpha fails", "alpha middle", "alpha small"]
    browser.click(f"#{table} thead th:nth-child(6) button")  # passed: failing first
    assert _column(browser, table, 5)[0] == "NO"
    browser.click("#parts thead th:nth-child(3) button")  # the parts table sorts too
    browser.click("#parts thead th:nth-child(3) button")
    assert _column(browser, "parts", 2) == ["1", "1", "0"]
    assert browser.problems() == []

    shot = browser.screenshot(tmp_path / "report.png")
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    if os.environ.get("ISOMETRY_SCREENSHOT_DIR"):
        Path(os.environ["ISOMETRY_SCREENSHOT_DIR"], "report.png").write_bytes(shot)


def test_a_missing_figure_is_said_on_the_page(browser, tmp_path):
    out = tmp_path / "report"
    _synthetic_report(out)
    (out / "figures" / "a2.png").unlink()
    ctx = Context(out=out, scale="quick", progress=False)
    parts = [PartResult.from_dict(json.loads((out / "parts" / f"{n}.json").read_text())["result"]) for n in ("alpha", "beta")]
    write_report(ctx, parts)
    browser.open(out / "index.html")
    assert browser.eval("document.querySelector('.missing').textContent") == "Figure file missing: figures/a2.png"
    widths = browser.eval("Array.from(document.images).map(i => i.naturalWidth)")
    assert len(widths) == 2 and min(widths) > 0
    assert browser.problems() == []
