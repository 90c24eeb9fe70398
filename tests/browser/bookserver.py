"""Serve the built book on localhost the way a browser test needs it, with MathJax from a local copy.

The built pages load MathJax 3 from a public CDN (``https://cdn.jsdelivr.net/npm/mathjax@3/...``),
which a test machine may not reach. ``BookServer`` serves ``_build/html`` unchanged on disk, but
rewrites each HTML page on the way out:

* the CDN ``<script src>`` points at ``/_mathjax/...``, served from the ``mathjax`` npm package
  (fetched once with ``npm pack`` into ``_build/browser/``; never committed);
* a small probe script is appended that waits for MathJax to finish typesetting, then records
  what a reader would see (rendered formulas, TeX errors, loaded images, tracebacks in cell
  outputs) as JSON in a hidden ``<pre id="browser-probe">``, so ``chromium --dump-dom`` can
  report it.

Run ``python tests/browser/bookserver.py`` to read the built book offline at http://localhost:8000.
"""

from __future__ import annotations

import functools
import http.server
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

MATHJAX_SPEC = "mathjax@3"
MATHJAX_ROUTE = "/_mathjax/"
CDN_RE = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3/(es5/[\w./-]+\.js)")

PROBE_JS = r"""
<script>
(function () {
  function text(el) { return (el.textContent || "").trim(); }
  async function probe() {
    const out = {};
    try {
      if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
        await MathJax.startup.promise;
        out.mathjax = MathJax.version || "loaded";
      } else {
        out.mathjax = null;
      }
    } catch (e) { out.mathjax_error = String(e); }
    const math = Array.from(document.querySelectorAll(".math"));
    out.math_elements = math.length;
    out.mjx_containers = document.querySelectorAll("mjx-container").length;
    // A .math element MathJax did not typeset still holds its TeX source.
    out.raw_math = math.filter(el => !el.querySelector("mjx-container"))
                       .map(el => text(el).slice(0, 120));
    // TeX errors: MathJax shows a parse error as <merror>, and an undefined macro (its
    // "noundefined" extension) as the macro's name in red.
    function source(el) {  // the TeX source of the formula holding el
      const m = el.closest(".math") || el;
      try { return MathJax.startup.document.getMathItemsWithin(m)[0].math.replace(/\s+/g, " ").trim(); }
      catch (e) { return text(m); }
    }
    out.tex_errors = Array.from(document.querySelectorAll("mjx-merror"))
      .map(el => `${el.getAttribute("data-mjx-error") || text(el)} in ${source(el).slice(0, 100)}`)
      .concat(Array.from(document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]'))
        .filter(el => text(el).startsWith("\\"))
        .map(el => `undefined macro ${text(el)} in ${source(el).slice(0, 100)}`));
    // $$ or \( left in prose (outside code): math the Markdown parser did not recognise.
    const walker = document.createTreeWalker(document.querySelector("main") || document.body,
                                             NodeFilter.SHOW_TEXT);
    out.raw_delimiters = [];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const p = n.parentElement;
      if (!p || p.closest("pre, code, script, style, mjx-container, .math, .cell_output, .highlight")) continue;
      if (/\$\$|\\\(|\\\[/.test(n.nodeValue)) out.raw_delimiters.push(n.nodeValue.trim().slice(0, 120));
    }
    const imgs = Array.from(document.querySelectorAll("main img, article img"));
    out.images = imgs.map(img => ({
      src: img.getAttribute("src"),
      loaded: img.complete && img.naturalWidth > 0,
      in_output: !!img.closest(".cell_output"),
    }));
    out.cells = Array.from(document.querySelectorAll("div.cell")).map(cell => {
      const input = cell.querySelector(".cell_input");
      const outputs = Array.from(cell.querySelectorAll(".cell_output .output"));
      return {
        input: input ? text(input).slice(0, 5000) : "",
        images: cell.querySelectorAll(".cell_output img").length,
        tracebacks: outputs.filter(el => el.classList.contains("traceback")
                                         || /Traceback \(most recent call last\)/.test(text(el)))
                           .map(el => text(el.querySelector("pre") || el).slice(-600)),
        stderr: outputs.filter(el => el.classList.contains("stderr"))
                       .map(el => text(el.querySelector("pre") || el).slice(0, 300)),
      };
    });
    // Display math wider than the text column (the reader has to scroll sideways).
    out.wide_math = Array.from(document.querySelectorAll("div.math")).filter(el => {
      const c = el.querySelector("mjx-container") || el;
      return Math.max(el.scrollWidth, c.scrollWidth) > el.clientWidth + 2;
    }).map(el => source(el).slice(0, 160));
    out.height = document.documentElement.scrollHeight;
    const pre = document.createElement("pre");
    pre.id = "browser-probe";
    pre.hidden = true;
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }
  if (document.readyState === "complete") probe();
  else window.addEventListener("load", probe);
})();
</script>
"""


def fetch_mathjax(cache: Path) -> Path:
    """Return a folder holding MathJax 3's ``es5`` build, fetched once with ``npm pack``."""
    es5 = cache / "mathjax" / "es5"
    if (es5 / "tex-mml-chtml.js").exists():
        return es5.parent
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed, so MathJax cannot be fetched for the browser test")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        done = subprocess.run([npm, "pack", MATHJAX_SPEC, "--silent", "--pack-destination", tmp],
                              capture_output=True, text=True, timeout=300)
        tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
        if done.returncode != 0 or not tarballs:
            raise RuntimeError(f"npm pack {MATHJAX_SPEC} failed: {done.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            members = [m for m in tar.getmembers()
                       if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())]
            try:
                tar.extractall(tmp, members=members, filter="data")
            except TypeError:  # Python without extraction filters (before 3.10.12 / 3.11.4)
                tar.extractall(tmp, members=members)
        target = cache / "mathjax"
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(Path(tmp) / "package"), target)
    return target


class _Handler(http.server.SimpleHTTPRequestHandler):
    mathjax_dir: Path | None = None
    probe: bool = True

    def log_message(self, format, *args):  # quiet: the test reports what matters
        pass

    def translate_path(self, path):
        route = path.split("?", 1)[0].split("#", 1)[0]
        if self.mathjax_dir is not None and route.startswith(MATHJAX_ROUTE):
            rel = Path(route[len(MATHJAX_ROUTE):])
            if ".." not in rel.parts:
                return str(self.mathjax_dir / rel)
        return super().translate_path(path)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if path.suffix != ".html" or not path.is_file():
            return super().send_head()
        html = path.read_text(encoding="utf-8")
        if self.mathjax_dir is not None:
            html = CDN_RE.sub(MATHJAX_ROUTE + r"\1", html)
        if self.probe:
            html = html.replace("</body>", PROBE_JS + "</body>", 1)
        body = html.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)


class BookServer:
    """Serve ``html_dir`` on 127.0.0.1 in a background thread (a context manager)."""

    def __init__(self, html_dir: Path, *, mathjax_dir: Path | None, port: int = 0, probe: bool = True):
        handler = type("Handler", (_Handler,), {"mathjax_dir": mathjax_dir, "probe": probe})
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), functools.partial(handler, directory=str(html_dir)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


if __name__ == "__main__":
    import argparse

    root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description="Serve the built book offline, MathJax included.")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    mathjax = fetch_mathjax(root / "_build" / "browser")
    with BookServer(root / "_build" / "html", mathjax_dir=mathjax, port=args.port, probe=False) as srv:
        print(f"Serving the book at {srv.url}chapters/intro.html  (Ctrl-C to stop)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
