"""The report in a real browser (Debian's chromium, headless): every figure loads, nothing is logged."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).parent / "_artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Appended to a copy of the page: after the load event, record which images did not decode.
CHECK = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-images", String(images.length));
  document.body.setAttribute("data-broken", JSON.stringify(
    images.filter(image => !(image.complete && image.naturalWidth > 0)).map(image => image.alt)));
});
</script>"""


def run_chromium(arguments: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *arguments], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_loads_in_chromium_without_errors(tiny_comparison, tmp_path):
    report = tiny_comparison.report
    page = report.read_text(encoding="utf-8")
    checked = report.with_name("report.checked.html")
    checked.write_text(page.replace("</body>", CHECK + "</body>"), encoding="utf-8")
    try:
        result = run_chromium(
            ["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom", checked.as_uri()],
            tmp_path / "profile",
        )
    finally:
        checked.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", result.stdout).group(1)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    broken = json.loads(re.search(r'data-broken="([^"]*)"', body).group(1).replace("&quot;", '"'))
    assert images == page.count("<img ") >= 5 and broken == []
    # the page has no script of its own: any console line is an error it caused
    console = [
        line
        for line in result.stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
    ]
    assert console == []

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "report_first_screen.png"
    shot = run_chromium(
        ["--window-size=1280,900", "--hide-scrollbars", f"--screenshot={screenshot}", report.as_uri()],
        tmp_path / "profile2",
    )
    assert shot.returncode == 0 and screenshot.stat().st_size > 10_000
    print(f"\nscreenshot of the report's first screen: {screenshot}")


# Appended to a copy of the page: draw two of the quotes' characters and a code point no font has in
# the page's own font stack; real glyphs differ from each other and from the missing-glyph box.
GLYPHS = """<script>
window.addEventListener("load", () => {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 64;
  const context = canvas.getContext("2d");
  const pixels = text => {
    context.clearRect(0, 0, 64, 64);
    context.font = "40px " + getComputedStyle(document.body).fontFamily;
    context.fillText(text, 4, 48);
    return Array.from(context.getImageData(0, 0, 64, 64).data).join(",");
  };
  const missing = pixels(String.fromCodePoint(0x10FFFD));
  const drawn = pixels("准") !== pixels("率") && pixels("准") !== missing && pixels("率") !== missing;
  document.body.setAttribute("data-cjk-glyphs", String(drawn));
});
</script>"""


def has_cjk_font() -> bool:
    listing = (
        subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True) if shutil.which("fc-list") else None
    )
    return bool(listing and listing.stdout.strip())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_the_articles_quotes_draw_with_real_glyphs(tiny_comparison, tmp_path):
    if not has_cjk_font():
        if os.environ.get("CI"):
            pytest.fail("no CJK font: .ci/run installs fonts-noto-cjk")
        pytest.skip("no CJK font installed (apt-get install -y fonts-noto-cjk)")
    report = tiny_comparison.report
    page = report.read_text(encoding="utf-8")
    assert re.search(r"[\u4e00-\u9fff]", page)  # the report quotes the articles
    assert '"Noto Sans CJK SC"' in page  # and names a font that has them
    checked = report.with_name("report.glyphs.html")
    checked.write_text(page.replace("</body>", GLYPHS + "</body>"), encoding="utf-8")
    try:
        result = run_chromium(["--virtual-time-budget=5000", "--dump-dom", checked.as_uri()], tmp_path / "profile")
    finally:
        checked.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'data-cjk-glyphs="true"' in result.stdout
