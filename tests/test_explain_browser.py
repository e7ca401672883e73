"""The explain report in a real browser: headless Chromium, driven over the
Chrome DevTools Protocol through a pipe (standard library only), loads the
report of the shipped model with the network disabled, and we check that the
page raised no JavaScript errors and made no requests, that the head view's
controls (kind, layer, head) change what is drawn -- to the weights the trace
recorded -- that hovering a word keeps only its lines, that hostile tokens
stay text, and that a screenshot is not blank.

Skipped only when no Chromium/Chrome binary can be found (Debian: apt-get
install chromium; CI's .ci/run installs it)."""
import base64
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

import numpy as np
import pytest

fcntl = pytest.importorskip("fcntl", reason="the DevTools pipe needs POSIX file descriptors")

from pytransformer.explain import trace
from pytransformer.explain.html import (Report, bar_chart_svg, head_view_data, head_view_html,
                                        heatmap_svg, line_chart_svg, table_html)

SENTENCE = "the black cat drank the milk"
TIMEOUT = 20.0


def _find_chromium():
    for name in (os.environ.get("PT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable", "chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium/Chrome binary found "
                                "(Debian: apt-get install chromium; or set PT_CHROMIUM)")


# ---------------------------------------------------------------------------
# a minimal DevTools client over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out)

class Browser:
    """Headless Chromium with DevTools over a pipe: NUL-terminated JSON
    messages; commands go to one page target (flattened session)."""

    def __init__(self, binary, width=1100, height=1400):
        self.profile = tempfile.mkdtemp(prefix="pt-chromium-")
        cmd_r, self._cmd_w = os.pipe()      # we write commands, Chromium reads fd 3
        self._out_r, out_w = os.pipe()      # Chromium writes fd 4, we read

        def child_fds():
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(out_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [binary, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--disable-component-update",
                "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, pass_fds=(3, 4),
                                     preexec_fn=child_fds)
        os.close(cmd_r)
        os.close(out_w)
        self._buf = b""
        self._id = 0
        self.events = []
        self.session = None

    def _read_message(self, deadline):
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._out_r], [], [], left)[0]:
                raise TimeoutError(f"Chromium did not answer within {TIMEOUT} s")
            chunk = os.read(self._out_r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method, params=None, session=True):
        """Send a command and return its result (events met meanwhile are kept)."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            m = self._read_message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method):
        deadline = time.monotonic() + TIMEOUT
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read_message(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def open_page(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self.send("Network.emulateNetworkConditions", {"offline": True, "latency": 0,
                                                       "downloadThroughput": -1,
                                                       "uploadThroughput": -1})

    def navigate(self, url):
        self.events = []                      # errors and requests are counted per page load
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expression):
        """Evaluate in the page; the value (JSON-serialisable) or a RuntimeError."""
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails']}")
        return r["result"].get("value")

    def errors(self):
        """JavaScript exceptions, console errors and failed requests seen so far."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(p["exceptionDetails"].get("exception", {}).get("description")
                           or p["exceptionDetails"].get("text"))
            elif m == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description")))
                                                        for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append("log: " + p["entry"].get("text", ""))
        return out

    def requests(self):
        """URLs the page requested (other than the report file itself)."""
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"
                and not e["params"]["request"]["url"].startswith(("file:", "data:", "about:"))]

    def mouse_move(self, x, y):
        self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})

    def screenshot(self, clip=None):
        params = {"format": "png", "optimizeForSpeed": True}
        if clip:
            params["clip"] = dict(clip, scale=1)
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def png_pixels(data):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)
    into a (H, W, C) uint8 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), np.int32)
    prev = np.zeros(w * ch, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        elif f == 1:                                # Sub: a running sum per channel
            cur = (np.cumsum(line.reshape(w, ch), axis=0) & 255).reshape(-1)
        else:                                       # Average / Paeth: sequential
            cur, pv = line.tolist(), prev.tolist()
            for x in range(w * ch):
                a = cur[x - ch] if x >= ch else 0
                b = pv[x]
                if f == 3:
                    cur[x] = (cur[x] + ((a + b) >> 1)) & 255
                else:
                    c = pv[x - ch] if x >= ch else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    cur[x] = (cur[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.array(cur, np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(h, w, ch).astype(np.uint8)


# ---------------------------------------------------------------------------
# fixtures

@pytest.fixture(scope="module")
def shipped_trace():
    from pytransformer.translator import Translator, default_model_path
    return trace(Translator.load(default_model_path()), SENTENCE)


@pytest.fixture(scope="module")
def report_path(shipped_trace, tmp_path_factory):
    t = shipped_trace
    rep = Report(f"Why it works: {SENTENCE}", subtitle="the shipped English-Spanish model")
    rep.add_section("Head view", "Each line joins a word (left) to a word it attends to (right); "
                    "the darker the line, the larger the weight.",
                    head_view_html(head_view_data(t)), id="heads")
    rows, cols = t.tokens("cross")
    w = t.attention("cross", -1).weights[0, :, :len(rows), :len(cols)]
    rep.add_section("Cross-attention, last layer", "Rows: the decoder input; columns: the source.",
                    heatmap_svg(w.mean(0), rows, cols, vmin=0, vmax=1, highlight=[(1, 0)]))
    rep.add_section("Bars", "Maximum weight per head.",
                    bar_chart_svg([f"head {h}" for h in range(w.shape[0])], w.max(axis=(1, 2))))
    rep.add_section("Lines", "Mean maximum weight per layer.",
                    line_chart_svg(list(range(t.num_layers("cross"))),
                                   {"cross": [t.attention("cross", i).weights[0].max(-1).mean()
                                              for i in range(t.num_layers("cross"))]}))
    rep.add_section("Table", "Tokens.", table_html(["kind", "rows", "cols"],
                                                   [[k, len(t.tokens(k)[0]), len(t.tokens(k)[1])]
                                                    for k in t.kinds()]))
    path = tmp_path_factory.mktemp("report") / "report.html"
    rep.save(path)
    return path


@pytest.fixture(scope="module")
def browser():
    b = Browser(CHROMIUM)
    try:
        b.open_page()
        yield b
    finally:
        b.close()


# ---------------------------------------------------------------------------
# tests

_STATE = """(() => {
  const r = document.querySelector('div.pt-headview');
  const lines = Array.from(r.querySelectorAll('line.pt-hv-line')).map(
      l => [+l.dataset.i, +l.dataset.j, +l.getAttribute('stroke-opacity')]);
  const words = sel => Array.from(r.querySelectorAll('text.pt-hv-word[data-side="' + sel + '"]'))
      .map(t => t.textContent);
  return {state: r.getAttribute('data-state'), lines, rows: words('row'), cols: words('col'),
          status: r.querySelector('.pt-hv-status').textContent,
          cells: r.querySelectorAll('.pt-hv-heatmap rect[data-i]').length};
})()"""


_FOCUS = "document.querySelector('div.pt-headview').getAttribute('data-focus')"


def _choose(browser, cls, value):
    browser.js(f"""(() => {{ const s = document.querySelector('div.pt-headview select.{cls}');
        s.value = {json.dumps(str(value))};
        s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")
    return browser.js(_STATE)


def _drawn(state, shape):
    m = np.full(shape, np.nan)
    for i, j, w in state["lines"]:
        m[i, j] = w
    return m


def test_report_loads_without_errors_or_requests(browser, report_path):
    browser.navigate(report_path.as_uri())
    assert browser.js("document.title").startswith("Why it works")
    assert browser.js("window.__ptErrors") == []
    assert browser.errors() == []
    assert browser.requests() == []
    assert browser.js("document.querySelectorAll('div.pt-headview svg').length") == 2


def test_controls_switch_to_the_traced_weights(browser, report_path, shipped_trace):
    t = shipped_trace
    browser.navigate(report_path.as_uri())
    seen = set()
    for kind in t.kinds():
        s = _choose(browser, "pt-hv-kind", kind)
        rows, cols = t.tokens(kind)
        assert (s["rows"], s["cols"]) == (list(rows), list(cols))
        for layer in range(t.num_layers(kind)):
            s = _choose(browser, "pt-hv-layer", layer)
            w = t.attention(kind, layer).weights[0, :, :len(rows), :len(cols)]
            for head in ["all"] + list(range(w.shape[0])):
                s = _choose(browser, "pt-hv-head", head)
                assert s["state"] == f"{kind}/{layer}/{head}"
                want = w.mean(0) if head == "all" else w[head]
                got = _drawn(s, want.shape)
                np.testing.assert_allclose(got, want, atol=1.5e-3)
                assert s["cells"] == want.size
                seen.add(json.dumps(s["lines"]))
    n_views = sum(t.num_layers(k) * (1 + t.attention(k, 0).num_heads) for k in t.kinds())
    assert len(seen) == n_views                # every choice drew something different
    assert browser.errors() == [] and browser.js("window.__ptErrors") == []


def test_hover_or_focus_keeps_only_the_words_lines(browser, report_path):
    browser.navigate(report_path.as_uri())
    _choose(browser, "pt-hv-kind", "cross")
    box = browser.js("""(() => { const t = document.querySelectorAll(
        'div.pt-headview text.pt-hv-word[data-side="row"]')[2];
        t.scrollIntoView({block: 'center'}); const r = t.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2]; })()""")
    browser.mouse_move(*box)
    s = browser.js(_STATE)
    assert browser.js(_FOCUS) == "row:2"
    assert all(w == 0 for i, _, w in s["lines"] if i != 2)
    assert any(w > 0 for i, _, w in s["lines"] if i == 2)
    browser.mouse_move(2, 2)
    s = browser.js(_STATE)
    assert any(w > 0 for i, _, w in s["lines"] if i != 2)
    # keyboard: focusing a source word shows only the lines into it
    browser.js("""document.querySelectorAll(
        'div.pt-headview text.pt-hv-word[data-side="col"]')[1].focus()""")
    s = browser.js(_STATE)
    assert browser.js(_FOCUS) == "col:1"
    assert all(w == 0 for _, j, w in s["lines"] if j != 1)


def test_screenshot_is_not_blank(browser, report_path):
    browser.navigate(report_path.as_uri())
    rect = browser.js("""(() => { const e = document.getElementById('heads');
        e.scrollIntoView(); const r = e.getBoundingClientRect();
        return {x: r.x + window.scrollX, y: r.y + window.scrollY,
                width: r.width, height: r.height}; })()""")
    png = browser.screenshot(clip=rect)
    out = os.environ.get("PT_HEADVIEW_PNG")
    if out:
        with open(out, "wb") as f:
            f.write(png)
    px = png_pixels(png)[..., :3].astype(np.int32)
    assert px.shape[0] > 100 and px.shape[1] > 300
    dark = (px.sum(-1) < 300).mean()          # text and lines
    assert dark > 0.005, f"only {dark:.4f} of the pixels are dark: the head view looks blank"
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 20


def test_hostile_tokens_stay_text(browser, tmp_path):
    evil = ["</script><script>window.__pwned=1</script>", "<b>bold</b>", "a&amp;b", "\u2028", "'\""]
    w = np.full((1, 1, len(evil), len(evil)), 1.0 / len(evil))
    rep = Report("<i>title</i>")
    rep.add_section("<b>heads</b>", "<script>window.__pwned=2</script>",
                    head_view_html({"kinds": {"encoder": {"title": "<u>x</u>", "rows": evil,
                                                          "cols": evil, "weights": w}}}))
    rep.add_section("map", "cap", heatmap_svg(w[0, 0], evil, evil))
    path = tmp_path / "evil.html"
    rep.save(path)
    browser.navigate(path.as_uri())
    assert browser.js("window.__pwned === undefined")
    assert browser.js("document.querySelectorAll('b, i, u').length") == 0
    s = browser.js(_STATE)
    assert s["rows"] == evil and s["cols"] == evil
    assert browser.js("document.title") == "<i>title</i>"
    assert browser.errors() == [] and browser.js("window.__ptErrors") == []


def test_jupyter_iframe_draws_the_head_view(browser, tmp_path):
    rep = Report("in a notebook")
    rep.add_section("heads", "c", head_view_html({"kinds": {"encoder": {
        "rows": ["a", "b"], "cols": ["a", "b"], "weights": [np.eye(2)[None]]}}}))
    path = tmp_path / "notebook.html"
    path.write_text("<!DOCTYPE html><html><body><p>cell output:</p>" + rep._repr_html_()
                    + "</body></html>", encoding="utf-8")
    browser.navigate(path.as_uri())
    n = browser.js("""new Promise(done => { const f = document.querySelector('iframe');
        const count = () => f.contentDocument.querySelectorAll('line.pt-hv-line').length;
        if (f.contentDocument.readyState === 'complete' && count()) done(count());
        else f.addEventListener('load', () => done(count())); })""")
    assert n == 4
    assert browser.errors() == []


_WT = """(() => {
  const r = document.querySelector('div.pt-walkthrough');
  const cells = sel => Array.from(r.querySelectorAll(sel)).map(c => c.textContent);
  return {state: r.getAttribute('data-state'), z: JSON.parse(r.getAttribute('data-z')),
          matrix: cells('.pt-wt-matrix tbody td'),
          selected: +r.querySelector('.pt-wt-matrix tr.pt-wt-sel').dataset.i,
          weights: Array.from(r.querySelectorAll('[data-w]')).map(c => +c.dataset.w)};
})()"""


def _wt_choose(browser, cls, value):
    browser.js(f"""(() => {{ const s = document.querySelector('div.pt-walkthrough select.{cls}');
        s.value = {json.dumps(str(value))};
        s.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")
    return browser.js(_WT)


def test_walkthrough_controls_change_the_matrix_and_the_sum(browser, shipped_trace, tmp_path):
    """Switching kind, layer, head and query redraws the factor matrix, the
    weights and the weighted sum; the sum the page computes is the head's
    recorded output for that word."""
    from pytransformer.explain.walkthrough import walkthrough_data, walkthrough_html
    t = shipped_trace
    rep = Report("walk-through")
    rep.add_section("w", "", walkthrough_html(walkthrough_data(t), include_script=False))
    path = tmp_path / "walk.html"
    rep.save(path)
    browser.navigate(path.as_uri())
    seen = set()                                  # factor matrices drawn
    for kind in t.kinds():
        _wt_choose(browser, "pt-wt-kind", kind)
        rows, cols = t.tokens(kind)
        for layer in range(t.num_layers(kind)):
            _wt_choose(browser, "pt-wt-layer", layer)
            rec = t.attention(kind, layer)
            for head in range(rec.num_heads):
                _wt_choose(browser, "pt-wt-head", head)
                for q in (0, len(rows) - 1):
                    s = _wt_choose(browser, "pt-wt-query", q)
                    assert s["state"] == f"{kind}/{layer}/{head}/{q}" and s["selected"] == q
                    np.testing.assert_allclose(s["weights"], rec.weights[0, head, q, :len(cols)],
                                               atol=1e-4)
                    np.testing.assert_allclose(s["z"], rec.head_out[0, head, q], atol=3e-3)
                    seen.add(json.dumps(s["matrix"]))
    # clicking a row of the matrix chooses that query
    browser.js("document.querySelectorAll('div.pt-walkthrough .pt-wt-matrix tbody tr')[1]"
               ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    assert browser.js(_WT)["selected"] == 1
    # every head drew its own matrix
    assert len(seen) == sum(t.num_layers(k) * t.attention(k, 0).num_heads for k in t.kinds())
    assert browser.errors() == [] and browser.js("window.__ptErrors") == []
