"""report.html and sweep.html in a real browser (headless Chromium): every image decodes and is
shown, nothing is wider than the window, and a screenshot is saved.

Skipped where no Chromium is installed (CI does not install it); on Debian or Ubuntu
``apt-get install chromium`` provides it (see the README).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import cimsim
from cimsim.cli import main
from cimsim.data import load_digits_split
from cimsim.sweep import run_sweep

WIDTH, HEIGHT = 1280, 900
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_CHROMIUM = next((path for path in map(shutil.which, _NAMES) if path), None)

pytestmark = pytest.mark.skipif(
    _CHROMIUM is None,
    reason="headless Chromium not found on PATH (tried: " + ", ".join(_NAMES) + "); install "
           "it to run the browser test, e.g. `apt-get install chromium` on Debian/Ubuntu")

# Run after the page has loaded: the measurements are written into the DOM, which
# --dump-dom then prints (the only channel out of a headless run without a driver).
_CHECK = """<script>
window.addEventListener('load', () => {
  const doc = document.documentElement;
  const images = Array.from(document.images).map(img => {
    const box = img.getBoundingClientRect(), style = getComputedStyle(img);
    return {alt: img.alt, complete: img.complete, natural_width: img.naturalWidth,
            shown_width: box.width, shown_height: box.height,
            visible: style.display !== 'none' && style.visibility !== 'hidden'};
  });
  const wide = Array.from(document.body.querySelectorAll('*'))
    .filter(el => el.getBoundingClientRect().right > window.innerWidth + 0.5
                  && !el.closest('.scroll'))
    .map(el => el.tagName + (el.className ? '.' + el.className : ''));
  const out = document.createElement('pre');
  out.id = 'cimsim-check';
  out.textContent = JSON.stringify({scroll_width: doc.scrollWidth,
                                    inner_width: window.innerWidth, images, wide});
  document.body.appendChild(out);
});
</script>"""


def _chromium(tmp_path: Path, *args: str) -> str:
    cmd = [str(_CHROMIUM), "--headless", "--disable-gpu", "--hide-scrollbars",
           # root (a container, CI) cannot use Chromium's sandbox
           "--no-sandbox", f"--user-data-dir={tmp_path / 'chromium-profile'}",
           f"--window-size={WIDTH},{HEIGHT}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"chromium failed ({done.returncode}): {done.stderr[-2000:]}"
    return done.stdout


def _check_page(page: Path, tmp_path: Path, n_images: int) -> None:
    """Load ``page`` (with the check script added to a copy) and hold it to the rules; save a
    screenshot of the page as it is beside it."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>"),
                     encoding="utf-8")
    dom = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    found = re.search(r"<pre id=\"cimsim-check\">(.*?)</pre>", dom, re.S)
    assert found, f"the check script did not run on {page.name}: {dom[-500:]}"
    result = json.loads(html.unescape(found.group(1)))

    assert result["inner_width"] == WIDTH
    assert len(result["images"]) == n_images
    for img in result["images"]:
        assert img["complete"] and img["natural_width"] > 0, f"not decoded: {img}"
        assert img["visible"] and img["shown_width"] > 0 and img["shown_height"] > 0, img
        assert img["shown_width"] <= WIDTH, img
    assert result["scroll_width"] <= result["inner_width"], (
        f"{page.name} is {result['scroll_width']} px wide in a {WIDTH} px window; "
        f"too wide: {result['wide'][:10]}")
    assert result["wide"] == []

    shot = tmp_path / f"{page.stem}.png"
    _chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_report_in_a_browser(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--fast", "--out", str(out)]) == 0
    n_png = len(list(out.glob("*.png")))
    assert n_png >= 3
    _check_page(out / "report.html", tmp_path, n_images=n_png)


def test_sweep_page_in_a_browser(tmp_path):
    x, y, _, _ = load_digits_split()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    out = tmp_path / "sweep"
    out.mkdir()
    run_sweep(model, (x[:48], y[:48]), cimsim.load_chip("rram-22nm"),
              {"adc_bits": [3, 5], "array_size": [64]}, out, calibration=16,
              progress=False)
    _check_page(out / "sweep.html", tmp_path, n_images=1)
