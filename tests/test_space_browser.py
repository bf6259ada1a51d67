"""The Space in a real browser: a Chromium driven by Playwright, against the app on loopback.

Uploads a phantom radiograph and reads the finding, switches to the triage tab and reads BASFI, checks
that the research-use notice is visible on every tab and that the page fits a phone-width screen.
Screenshots of each tab go to test-artifacts/ (gitignored) for people to look at.

The browser is the first of: ``AS_AI_CHROMIUM`` (a path; ``none`` means "no browser"), Debian's
/usr/bin/chromium, ``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH, and a Chromium that
``python -m playwright install chromium`` downloaded. Without one the tests are skipped with a one-line reason
in the summary; with ``AS_AI_REQUIRE_BROWSER=1`` (CI sets it) a missing browser is an error instead.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REQUIRE_BROWSER = os.environ.get("AS_AI_REQUIRE_BROWSER", "").strip().lower() not in ("", "0", "false", "no")

try:
    import playwright.sync_api as playwright_api
except ImportError as exc:  # a dev dependency: missing only where the install was not `make`'s
    if REQUIRE_BROWSER:
        raise
    pytest.skip(f"real-browser tests skipped: Playwright is not installed ({exc}); `make test` installs it",
                allow_module_level=True)
pytest.importorskip("gradio")

from test_space_handlers import app, models, valid_patient  # noqa: E402,F401  (module-scoped fixtures)


ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
TIMEOUT_MS = 90_000


def find_chromium() -> tuple[str | None, str]:
    """The Chromium to drive, and where it was found (or, when there is none, where it was looked for)."""
    env = os.environ.get("AS_AI_CHROMIUM", "").strip()
    if env:
        if env.lower() == "none":
            return None, "AS_AI_CHROMIUM=none"
        found = shutil.which(env)
        return (found, f"AS_AI_CHROMIUM={env}") if found else (None, f"AS_AI_CHROMIUM={env} is not an executable")
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium", "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found, f"{name} on PATH"
    cache = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or os.path.expanduser("~/.cache/ms-playwright")
    for found in sorted(glob.glob(os.path.join(cache, "chromium-*", "chrome-linux*", "chrome")), reverse=True):
        if os.access(found, os.X_OK):
            return found, "Playwright's own Chromium"
    return None, f"none at /usr/bin/chromium, on PATH or in {cache}"


CHROMIUM, CHROMIUM_FOUND = find_chromium()
NO_BROWSER = (f"real browser: no Chromium ({CHROMIUM_FOUND}); apt-get install chromium, "
              "or AS_AI_CHROMIUM=/path/to/chromium")


@pytest.fixture(scope="module", autouse=True)
def _need_chromium():
    """Skip this module's tests, before the server starts, when there is no browser; fail instead in CI."""
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail(f"{NO_BROWSER} (AS_AI_REQUIRE_BROWSER is set: an error, not a skip)", pytrace=False)
        pytest.skip(NO_BROWSER)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(app, models, tmp_path_factory):
    """The page, served from this process on a free loopback port, as ``python space/app.py`` serves it."""
    examples = tmp_path_factory.mktemp("browser_examples")
    demo = app.build_app(models, examples_dir=examples)
    demo.queue(max_size=app.QUEUE_MAX_SIZE, default_concurrency_limit=app.CONCURRENCY_LIMIT)
    kwargs = app.launch_kwargs()
    kwargs.update(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    demo.launch(**kwargs)
    yield demo.local_url, examples
    demo.close()


@pytest.fixture(scope="module")
def playwright():
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright_api.sync_playwright() as p:
        yield p


def chromium(p, profile: Path, **options):
    """The Chromium found above, headless, with a fresh profile folder; ``options`` set the viewport and device."""
    context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS, **options)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture(scope="module")
def browser(playwright, tmp_path_factory):
    context = chromium(playwright, tmp_path_factory.mktemp("chromium_profile"), viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def wait_for_result_or_toast(page, result, what: str) -> None:
    """Wait for ``result`` to show; fail at once, quoting it, if the page shows an error toast instead."""
    toast = page.locator(".toast-body")
    try:
        result.or_(toast).first.wait_for()
    except playwright_api.TimeoutError:
        page.screenshot(path=str(ARTIFACTS / "space_failure.png"), full_page=True)
        pytest.fail(f"neither the {what} nor an error showed within {TIMEOUT_MS / 1000:.0f} s; the page reads: "
                    f"{page.locator('body').inner_text()[-1500:]!r} (screenshot: test-artifacts/space_failure.png)")
    if not result.is_visible() and toast.count():
        page.screenshot(path=str(ARTIFACTS / "space_failure.png"), full_page=True)
        pytest.fail(f"the page showed an error instead of the {what}: {toast.first.inner_text()!r}")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(300)


def test_radiograph_then_triage_in_a_browser(server, browser, models):
    url, examples = server
    page = browser.new_page()
    page.goto(url)
    notice = page.locator("#notice")
    notice.wait_for(state="visible")
    assert "Research use only" in notice.inner_text()

    # Radiograph tab: upload a phantom, analyse, read the finding
    phantom = sorted(examples.glob("phantom_*_truth_AS.png"))[0]
    page.locator("#rad-file input[type=file]").set_input_files(str(phantom))
    page.locator("#rad-file").get_by_text(re.compile(r"\d\s*[KM]B")).wait_for()  # the upload is in
    page.locator("#rad-btn").click()
    finding = page.locator("#rad-finding")
    wait_for_result_or_toast(page, finding.get_by_text(re.compile(r"probability of AS|abstained")), "finding")
    expected = models.diagnoser(str(phantom))
    text = finding.inner_text()
    if expected.label == "indeterminate":
        assert "abstained" in text
    else:
        assert f"{100 * expected.probability:.0f} %" in text and f"{expected.threshold:.3f}" in text
        page.locator("#rad-heat img").wait_for()
    assert notice.is_visible()
    page.screenshot(path=str(ARTIFACTS / "space_radiograph.png"), full_page=True)

    # one-stop flow: after a finding that suggests AS, the button takes us to the triage tab
    if expected.label == "AS":
        page.locator("#rad-to-triage").click()
        page.locator("#tri-btn").wait_for(state="visible")
        page.wait_for_timeout(300)  # as open_tab: the newly shown tab settles before we type (else a fill can be lost)
    else:
        assert not page.locator("#rad-to-triage").is_visible()
        open_tab(page, "Triage")

    # Clinical triage tab: fill the required fields, predict, read BASFI
    patient = valid_patient(models)
    for f in models.triager.schema.features:
        value = patient[f.name]
        if value is None:
            continue
        if f.type == "bool":
            page.locator(f"#tri-{f.name}").get_by_text(value, exact=True).click()
        else:
            box = page.locator(f"#tri-{f.name}").locator("input, textarea").first
            box.fill(f"{value:g}")
            playwright_api.expect(box).to_have_value(f"{value:g}")
    page.locator("#tri-btn").click()
    scores = page.locator("#tri-scores")
    wait_for_result_or_toast(page, scores.get_by_text("BASFI"), "triage scores")
    t = models.triager(patient)
    row = scores.locator("tr", has_text="BASFI").inner_text()
    assert f"{t.basfi:.1f}" in row
    assert ("Higher risk" in page.locator("#tri-risk").inner_text()) == (t.risk == "high")
    page.locator("#tri-plot img").wait_for()
    assert notice.is_visible()
    page.screenshot(path=str(ARTIFACTS / "space_triage.png"), full_page=True)

    # Camera and About tabs: notice visible, content there
    open_tab(page, "Camera")
    page.locator("#cam-image").wait_for(state="visible")
    assert notice.is_visible()
    page.screenshot(path=str(ARTIFACTS / "space_camera.png"), full_page=True)
    open_tab(page, "About")
    page.locator("#about").get_by_text("Frontiers in Public Health").first.wait_for()
    assert notice.is_visible()
    page.screenshot(path=str(ARTIFACTS / "space_about.png"), full_page=True)
    page.close()


def test_unreadable_upload_shows_a_message_not_a_traceback(server, browser, tmp_path):
    url, _ = server
    page = browser.new_page()
    page.goto(url)
    page.locator("#notice").wait_for(state="visible")
    bad = tmp_path / "notes.png"
    bad.write_text("patient notes, not an image")
    page.locator("#rad-file input[type=file]").set_input_files(str(bad))
    page.locator("#rad-file").get_by_text(re.compile(r"\d\s*B")).wait_for()  # the upload is in
    page.locator("#rad-btn").click()
    toast = page.locator(".toast-body", has_text="Unsupported image format")
    toast.wait_for(state="visible")
    assert "DICOM" in toast.inner_text()
    assert "Traceback" not in page.locator("body").inner_text()
    page.wait_for_timeout(400)  # let the toast finish sliding in before the screenshot
    page.screenshot(path=str(ARTIFACTS / "space_error.png"))
    page.close()


def test_phone_width_page(server, playwright, tmp_path):
    url, examples = server
    phone = chromium(playwright, tmp_path / "phone_profile", viewport={"width": 400, "height": 860},
                     is_mobile=True, has_touch=True, device_scale_factor=2)
    page = phone.new_page()
    page.goto(url)
    page.locator("#notice").wait_for(state="visible")
    phantom = sorted(examples.glob("phantom_*_truth_non-AS.png"))[0]
    page.get_by_text(phantom.name).first.click()            # an example, as a visitor would try first
    page.locator("#rad-file").get_by_text(re.compile(r"\d\s*[KM]B")).wait_for()  # loaded (its name is shortened)
    page.locator("#rad-btn").click()
    page.locator("#rad-finding").get_by_text(re.compile(r"probability of AS|abstained")).wait_for()
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 1, f"the page scrolls sideways by {overflow} px on a 400 px wide screen"
    for name in ("Radiograph", "Camera", "Triage", "About"):  # every tab reachable without a menu
        assert page.get_by_role("tab", name=name).is_visible(), f"tab {name!r} hidden on a 400 px wide screen"
    page.screenshot(path=str(ARTIFACTS / "space_phone.png"), full_page=True)
    phone.close()
