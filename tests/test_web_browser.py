"""The web app in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright), against a real
``ttpscope serve`` started by the test: the matrix explorer, colouring, compare, keyboard and phone use, and
the main job (upload a report, follow the background investigation, read the case, download its layer).
Screenshots go to ci-artifacts/screenshots/."""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest

from browser import SHOTS, chromium

from ttpscope.export.layers import make_layer, validate_layer

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TOKEN = "browser-token-0123456789abcdef"
REPORT = ROOT / "examples" / "evidence" / "report-ashen-lantern.md"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from ttpscope.api.launch import served

    # the test session's home (its trained text model is reused); a workspace of the server's own
    home, own = Path(os.environ["TTPSCOPE_HOME"]), tmp_path_factory.mktemp("web")
    with served(home, TOKEN, extra_args=("--bundle", "embedded", "--rules", str(ROOT / "examples" / "rules"),
                                         "--workspace", str(own / "workspace.duckdb")),
                log=own / "server.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()


def marked_ids(page) -> set[str]:
    return set(page.eval_on_selector_all(".cell.marked, .sub.marked", "els => els.map(e => e.dataset.id)"))


def test_matrix_coloured_by_group_then_click_through(server, page, kb):
    page.goto(server + "/")
    assert page.locator(".tactic").count() == len(kb.tactic_list())
    assert marked_ids(page) == set()
    # fits a 1280 px window: only the matrix itself scrolls sideways, never the page
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    page.fill("#group", "Cozy Bear")
    page.press("#group", "Enter")
    page.wait_for_url(re.compile(r"group=Cozy"))
    assert marked_ids(page) == kb.group_techniques("G0016")
    assert "G0016 APT29" in page.inner_text(".coloured")
    page.screenshot(path=str(SHOTS / "matrix-apt29-1280.png"))
    with page.expect_download() as dl:
        page.click("text=download layer")
    layer = orjson.loads(Path(dl.value.path()).read_bytes())
    assert {c["techniqueID"] for c in layer["techniques"] if "score" in c} == kb.group_techniques("G0016")
    page.click(".cell.marked >> nth=0 >> a")
    page.wait_for_url(re.compile(r"/techniques/T\d{4}"))
    tid = page.url.rsplit("/", 1)[-1]
    assert page.inner_text("h1").startswith(tid)
    assert not page.errors


def test_keyboard_only_navigation(server, page):
    page.goto(server + "/")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    summary = page.locator(".cell details summary").first
    summary.focus()
    assert page.locator(".cell details").first.get_attribute("open") is None
    page.keyboard.press("Enter")
    assert page.locator(".cell details").first.get_attribute("open") is not None
    page.keyboard.press("Tab")  # into the first sub-technique link
    href = page.evaluate("document.activeElement.getAttribute('href')")
    assert re.fullmatch(r"/techniques/T\d{4}\.\d{3}", href)
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(re.escape(href) + "$"))


def test_uploaded_layer_colours_the_matrix_and_its_text_stays_text(server, page, kb, tmp_path):
    ids = ["T1566.001", "T1059.001", "T1003.001"]
    layer = make_layer("<script>alert('layer')</script>", kb,
                       [{"id": t, "score": i + 1, "comment": "<img src=x onerror=alert('cell')>"}
                        for i, t in enumerate(ids)])
    path = tmp_path / "evil-layer.json"
    path.write_bytes(orjson.dumps(layer))
    page.goto(server + "/")
    page.set_input_files("#layer", str(path))
    page.click("text=Upload layer")
    page.wait_for_selector(".coloured")
    assert marked_ids(page) == set(ids)
    assert "<script>alert('layer')</script>" in page.inner_text(".coloured")
    assert page.dialogs == [] and not page.errors
    page.screenshot(path=str(SHOTS / "matrix-uploaded-layer.png"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"techniques": [{"techniqueID": "oops"}]}')
    page.set_input_files("#layer", str(bad))
    page.click("text=Upload layer")
    assert "oops" in page.inner_text("[role=alert]")


def test_compare_two_groups_side_by_side(server, page, kb):
    page.goto(server + "/compare")
    page.fill("#a", "group:APT29")
    page.fill("#b", "group:APT28")
    page.click("button:text('Compare')")
    page.wait_for_selector("#shared-count")
    shared = kb.group_techniques("G0016") & kb.group_techniques("G0007")
    assert int(page.inner_text("#shared-count")) == len(shared)
    listed = set(page.eval_on_selector_all(".side-by-side .shared a", "els => els.map(e => e.textContent.split(' ')[0])"))
    assert listed == shared
    page.screenshot(path=str(SHOTS / "compare-apt29-apt28.png"), full_page=False)


def test_readable_at_phone_width(server, browser, kb):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        for url in ("/?group=APT28", "/groups/APT28", "/techniques/T1059.001", "/compare?a=group:APT29&b=group:APT28"):
            page.goto(server + url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390 + 1, f"{url} is {width}px wide at phone width"
        page.goto(server + "/?group=APT28")
        page.screenshot(path=str(SHOTS / "matrix-apt28-phone.png"))
    finally:
        context.close()


def test_upload_refused_without_the_right_token(server, page):
    page.goto(server + "/upload")
    page.fill("#token", "wrong-token-0123456789")
    page.fill("#text", "APT29 used PowerShell.")
    page.click("button:text('Investigate')")
    page.wait_for_selector("#upload-status.error")
    assert "Bearer" in page.inner_text("#upload-status")
    assert "/upload" in page.url
def follow_job_to_case(page) -> str:
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f]+$"), timeout=30_000)
    assert page.locator("#job-progress").count() == 1
    page.wait_for_url(re.compile(r"/cases/[0-9a-f]+$"), timeout=240_000)
    return page.url.rsplit("/", 1)[-1]


def test_upload_report_follow_progress_read_case_download_layer(server, page, kb):
    page.goto(server + f"/upload#token={TOKEN}")
    assert page.input_value("#token") == TOKEN  # taken from the address fragment, never sent to the server
    page.set_input_files("#file", str(REPORT))
    page.fill("#name", "ashen lantern (web)")
    page.click("button:text('Investigate')")
    follow_job_to_case(page)
    assert "ashen lantern (web)" in page.inner_text("h1")
    heat = set(page.eval_on_selector_all("#heatmap .cell.marked, #heatmap .sub.marked",
                                         "els => els.map(e => e.dataset.id)"))
    assert len(heat) >= 5, heat
    visible = page.locator("#heatmap .cell:visible")
    shown = visible.count()
    assert shown == page.locator("#heatmap .cell.marked:visible, #heatmap .cell.has-marked-subs:visible").count()
    page.uncheck("[data-only-marked]")  # the whole matrix again
    assert visible.count() > shown
    page.check("[data-only-marked]")
    verdict = page.inner_text("#attribution-verdict")
    assert verdict
    rows = page.locator("#attribution-table tbody tr")
    assert rows.count() >= 1 and re.search(r"G\d{4}", rows.first.inner_text())
    page.screenshot(path=str(SHOTS / "case-ashen-lantern.png"), full_page=True)
    with page.expect_download() as dl:
        page.click("#download-layer")
    layer = orjson.loads(Path(dl.value.path()).read_bytes())
    assert validate_layer(layer, kb) == []
    assert {c["techniqueID"] for c in layer["techniques"] if "score" in c} == heat
    assert page.dialogs == []



def test_pasted_report_with_script_renders_as_text(server, page):
    script = "<script>alert('pasted')</script>"
    hostile = ("The actor sent spearphishing emails with a malicious Word attachment. Then PowerShell downloaded "
               f"a second stage and the operators dumped LSASS memory {script} with comsvcs.dll to steal "
               "credentials.")
    page.goto(server + f"/upload#token={TOKEN}")
    page.fill("#text", hostile)
    page.fill("#name", "pasted <b>text</b>")
    page.click("button:text('Investigate')")
    follow_job_to_case(page)
    assert "pasted <b>text</b>" in page.inner_text("h1")
    assert script in page.text_content("#evidence")  # shown as text in the evidence
    assert page.dialogs == []
    assert page.evaluate("document.querySelectorAll('main script').length") == 0
