"""report.html in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), offline: the page
must draw its heatmap and every chart it carries, run no injected script, and fetch nothing.
Screenshots go to ci-artifacts/screenshots/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_investigate import sample_case

from ttpscope.export.outputs import write_outputs
from ttpscope.investigate.analysis import analyse_case

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "ci-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

# what each figure draws once Plotly has rendered it
DRAWN = """() => {
  const out = {};
  for (const d of document.querySelectorAll('[data-figure]')) {
    out[d.dataset.figure] = {
      rendered: d.dataset.rendered === 'true',
      svg: d.querySelectorAll('.main-svg').length,
      heat: d.querySelectorAll('.hm image, .heatmaplayer image').length,
      points: d.querySelectorAll('.scatterlayer .point').length,
      bars: d.querySelectorAll('.barlayer .point').length,
      width: d.getBoundingClientRect().width, height: d.getBoundingClientRect().height,
    };
  }
  return out;
}"""


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (the CI script does)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_report(browser, path: Path):
    """The report page, offline, with every request, dialog and script error recorded."""
    context = browser.new_context(viewport={"width": 1366, "height": 900}, offline=True)
    page = context.new_page()
    page.requests, page.dialogs, page.errors = [], [], []
    page.on("request", lambda r: page.requests.append(r.url) if not r.url.startswith(("file:", "data:", "blob:"))
            else None)
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(path.as_uri())
    return context, page


def check_report(browser, path: Path, shot: str) -> dict:
    """Open a report, wait for its figures, check each one drew, take screenshots; returns what was drawn."""
    figures = json.loads(path.read_text(encoding="utf-8").split('<script id="figures-data" type="application/json">')[1]
                         .split("</script>")[0])
    context, page = open_report(browser, path)
    try:
        page.wait_for_function(f"Object.keys(window.ttpscopeFigures || {{}}).length >= {len(figures)}", timeout=30000)
        drawn = page.evaluate(DRAWN)
        assert set(drawn) == set(figures)
        for name, fig in drawn.items():
            assert fig["rendered"] and fig["svg"] >= 1 and fig["width"] > 300 and fig["height"] > 100, (name, fig)
        assert drawn["matrix"]["heat"] >= 1
        if "timeline" in figures:
            assert drawn["timeline"]["points"] == sum(len(t["x"]) for t in figures["timeline"]["data"])
        if "attribution" in figures:
            assert drawn["attribution"]["bars"] == len(figures["attribution"]["data"][0]["x"])
        page.screenshot(path=str(SHOTS / f"{shot}.png"), full_page=True)
        page.locator("#matrix").screenshot(path=str(SHOTS / f"{shot}-matrix.png"))
        assert page.dialogs == [], "a script from the evidence ran"
        assert page.errors == []
        assert page.requests == [], "the report fetched something over the network"
        return drawn
    finally:
        context.close()


def colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as im:
        return len(im.convert("RGB").resize((200, 100)).getcolors(maxcolors=20000) or [])


def test_report_renders_heatmap_and_charts_offline(browser, kb, tmp_path):
    case, dets, docs = sample_case()
    analysis = analyse_case(case, kb, detections=dets, documents=docs, rules=ROOT / "examples" / "rules")
    path = write_outputs(analysis, kb, tmp_path, ["html"])["html"]
    drawn = check_report(browser, path, "report-sample")
    # the heatmap screenshot is a real picture, not a blank box
    assert colours(SHOTS / "report-sample-matrix.png") > 20
    assert "matrix" in drawn
