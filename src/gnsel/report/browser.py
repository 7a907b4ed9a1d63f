"""A documented end-to-end check of a report's HTML: open it in headless Chromium, ask every image.

:func:`render_check` needs a ``chromium`` (or ``chromium-browser``) binary on PATH; without one it
raises a ``RuntimeError`` that says how to install it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["render_check"]

_CHROMIUM_NAMES = ("chromium", "chromium-browser")
_CHROMIUM_TIMEOUT_S = 60
_PROBE = """<script>
window.addEventListener("load", function () {
  var ok = Array.prototype.map.call(document.images, function (img) {
    return img.complete && img.naturalWidth > 0;
  });
  document.title = JSON.stringify({count: document.images.length, ok: ok});
});
</script>
"""

def render_check(html_path: str | Path, screenshot: str | Path | None = None) -> list[bool]:
    """Load a report in headless Chromium and return, per <img>, whether it decoded (for an end-to-end check)."""
    binary = _chromium_binary()
    page = Path(html_path).resolve()
    with tempfile.TemporaryDirectory(prefix="gnsel-render-") as tmp:
        probe = Path(tmp) / f"probe-{page.name}"
        probe.write_text(_inject_probe(page.read_text(encoding="utf-8")), encoding="utf-8")
        dom = _run_chromium(binary, tmp, ["--dump-dom", probe.as_uri()])
        status = _parse_probe_title(dom)
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.unlink(missing_ok=True)
            args = [f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri()]
            _run_chromium(binary, tmp, args)
            if not shot.is_file():
                raise RuntimeError(f"chromium did not write the screenshot {shot}")
    return status


def _chromium_binary() -> str:
    """Path of a chromium binary on PATH, or a clear RuntimeError."""
    for name in _CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "no chromium binary found (looked for chromium, chromium-browser on PATH); "
        "on Debian/Ubuntu: apt-get install -y chromium"
    )


def _inject_probe(page: str) -> str:
    """The page with a script before </body> that reports image decode status in the title."""
    at = page.lower().rfind("</body>")
    if at < 0:
        return page + _PROBE
    return page[:at] + _PROBE + page[at:]


def _run_chromium(binary: str, profile_dir: str, args: list[str]) -> str:
    """Run headless chromium with a throwaway profile; return stdout or raise RuntimeError."""
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}/profile",
        "--virtual-time-budget=5000", *args,
    ]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_CHROMIUM_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"chromium timed out after {_CHROMIUM_TIMEOUT_S} s: {cmd}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def _parse_probe_title(dom: str) -> list[bool]:
    """Per-image decode status from the <title> the probe script wrote."""
    match = re.search(r"<title>(.*?)</title>", dom, re.DOTALL | re.IGNORECASE)
    try:
        probe = json.loads(html.unescape(match.group(1)))
        ok = [bool(x) for x in probe["ok"]]
    except (AttributeError, ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"the probe did not report (page not loaded?): {dom[:300]!r}") from exc
    if probe.get("count") != len(ok):
        raise RuntimeError(f"probe count {probe.get('count')} != {len(ok)} statuses")
    return ok
