"""End to end in a real browser: Debian's Chromium driven by Playwright against the live server,
a real qcluster worker running the real ingest pipeline, and the fake docs.rs serving the real
rustdoc JSON of the fixture crate.

The operator logs in, adds a crate, watches the job progress to complete without a reload, opens
the crate, searches it, soft-deletes and restores it. Screenshots of the job list mid-run and of
the dashboard go to bench/screenshots/ (or $FERRODEX_SCREENSHOT_DIR) for a reviewer to look at.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from django.db import connections
from werkzeug import Response

from crates.models import Crate, CrateRelease
from jobs.models import CrateJob
from tests.fakes import ferro_fixture_json, zstd
from tests.jobs_helpers import QCluster

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = Path(os.environ.get("FERRODEX_SCREENSHOT_DIR", Path(__file__).resolve().parent.parent / "bench"
                                  / "screenshots"))
PASSWORD = "operator-pass-1"
TIMEOUT_MS = 60_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Chromium is not installed at /usr/bin/chromium (Debian package 'chromium'; scripts/install-browser "
               "installs it where root and apt-get are available), so the end-to-end browser test cannot run here.",
    ),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            # Django's connections are context-local; inside Playwright's event loop the test used its own,
            # which would outlive the test and keep the test database from being dropped.
            connections.close_all()


@pytest.fixture
def gated_docs(fake_docsrs):
    """ferro-fixture on the fake docs.rs; its rustdoc JSON download waits until the test opens the gate,
    so the job is caught mid-run (fetch stage) for as long as the test needs."""
    body = zstd(ferro_fixture_json())
    gate = threading.Event()
    fake_docsrs.add_crate("ferro-fixture", versions=["0.3.1"], json_bytes=body,
                          description="A fixture crate for Ferrodex tests", repository="https://example.invalid/ferro")

    def slow_json(request):
        gate.wait(timeout=8)  # below the worker's HTTP timeout (10 s in the fake's settings)
        return Response(body, status=200, content_type="application/zstd")

    fake_docsrs.add_route("/crate/ferro-fixture/0.3.1/json", slow_json)
    yield gate
    gate.set()


@pytest.fixture
def worker(fake_docsrs, tmp_path):
    cluster = QCluster(
        log_path=tmp_path / "qcluster.log",
        env={**fake_docsrs.env(), "FERRODEX_INGEST_FUNCTION": "crates.pipeline.ingest.run_ingest",
             "EMBEDDING_PROVIDER": "hash", "Q_WORKERS": "1"},
    ).start()
    yield cluster
    cluster.stop()


# Records every progress value the page shows, and the status text, as the DOM changes.
WATCH_PROGRESS = """(selector) => {
    window.__fxMarker = "no reload since " + Date.now();
    window.__fxProgress = [];
    const bar = document.querySelector(selector);
    const record = () => window.__fxProgress.push(Number(bar.getAttribute("aria-valuenow")));
    record();
    new MutationObserver(record).observe(bar, {attributes: true, attributeFilter: ["aria-valuenow"]});
}"""


def test_operator_adds_watches_searches_deletes_and_restores_a_crate(
    live_server, django_user_model, gated_docs, worker, browser, settings, monkeypatch
):
    # Playwright's sync API runs an event loop in this thread; the ORM checks below are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.EMBEDDING_PROVIDER = "hash"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    django_user_model.objects.create_superuser("operator", "operator@example.invalid", PASSWORD)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Log in.
    page.goto(f"{live_server.url}/admin/")
    assert "/admin/login/" in page.url
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#fx-dashboard")

    # Add a crate: the form enqueues a job and takes us to it.
    page.click("nav.fx-nav >> text=Crates")
    page.click("a.addlink")
    page.fill("#id_name", "ferro-fixture")
    page.click("input[type=submit][value='Ingest crate']")
    page.wait_for_url("**/admin/jobs/cratejob/*/change/")
    job = CrateJob.objects.get()
    assert (job.crate_name, job.requested_by, job.operation) == ("ferro-fixture", "admin", "ingest")
    assert page.inner_text(".messagelist").startswith("Ingest of ferro-fixture queued")
    detail_url = page.url

    # The job list, left open: the job is caught mid-run (downloading), its row updating in place.
    page.goto(f"{live_server.url}/admin/jobs/cratejob/")
    row_bar = f'.fx-progress[data-job-id="{job.pk}"]'
    row_badge = f'.fx-badge[data-job-id="{job.pk}"]'
    page.evaluate(WATCH_PROGRESS, row_bar)
    page.wait_for_function(
        "([bar, badge]) => document.querySelector(badge).textContent.startsWith('Running')"
        " && Number(document.querySelector(bar).getAttribute('aria-valuenow')) > 0",
        arg=[row_bar, row_badge],
    )
    assert "ferro-fixture 0.3.1" in page.inner_text(f'.fx-stage[data-job-id="{job.pk}"]')
    page.screenshot(path=str(SCREENSHOTS / "job_list_running.png"), full_page=True)

    # A second tab on the job's own page, to see the detail view update too.
    detail = context.new_page()
    detail.goto(detail_url)
    detail.evaluate(WATCH_PROGRESS, f'#fx-job-detail {row_bar}')
    assert detail.is_visible("#fx-cancel")  # a running job can be cancelled

    gated_docs.set()  # let the download finish: the job runs to the end

    page.wait_for_function("(badge) => document.querySelector(badge).textContent === 'Complete'", arg=row_badge,
                           timeout=90_000)
    seen = page.evaluate("window.__fxProgress")
    assert page.evaluate("window.__fxMarker").startswith("no reload since"), "the job list page was reloaded"
    assert seen[-1] == 100 and seen == sorted(seen), seen
    assert any(0 < p < 100 for p in seen), f"no intermediate progress was shown: {seen}"
    # Live updates came from polling: at least a second poll (the first may already see the job complete).
    page.wait_for_function("() => Number(document.documentElement.dataset.fxPolls) >= 2", timeout=60_000)

    detail.wait_for_function("() => document.querySelector('#fx-job-detail').dataset.status === 'complete'")
    assert detail.evaluate("window.__fxMarker").startswith("no reload since"), "the job page was reloaded"
    assert detail.evaluate("window.__fxProgress")[-1] == 100
    assert "Completed" in detail.inner_text("#fx-timeline") or "completed" in detail.inner_text("#fx-timeline")
    assert detail.is_hidden("#fx-cancel")
    documents = int(detail.inner_text('[data-field="documents"]').replace("\u202f", ""))
    release = CrateRelease.objects.get(state="active")
    assert documents == release.document_count > 30
    detail.close()

    # Open the crate from the job page.
    page.goto(detail_url)
    page.click("text=Open crate")
    page.wait_for_selector("h1:has-text('ferro-fixture')")
    assert "0.3.1" in page.inner_text("#content")
    assert page.inner_text(".fx-title .fx-badge") == "Active"

    # Search it, as an agent would.
    page.click("#fx-search-crate")
    page.fill("#id_q", "parse a log level")
    page.click("#fx-search-form button[type=submit]")
    page.wait_for_selector("#fx-results")
    hits = page.locator(".fx-hit")
    assert hits.count() >= 1
    assert "ferro_fixture::parse_log_level" in page.inner_text("#fx-results")
    assert page.locator(".fx-signal-on").count() >= 1
    page.click(".fx-hit-path:has-text('parse_log_level')")
    page.wait_for_selector(".fx-signature .highlight")

    # Soft delete, then restore.
    page.goto(f"{live_server.url}/admin/crates/crate/{release.crate_id}/change/")
    page.click("#fx-soft-delete")  # the removal job, as from the API and MCP: its page follows it
    page.wait_for_url("**/admin/jobs/cratejob/*/change/")
    page.wait_for_function("() => document.querySelector('#fx-job-detail').dataset.status === 'complete'",
                           timeout=60_000)
    page.goto(f"{live_server.url}/admin/crates/crate/{release.crate_id}/change/")
    page.wait_for_selector("#fx-deleted-flag")
    assert Crate.objects.get().deleted_at is not None
    page.click("#fx-restore")
    page.wait_for_selector("#fx-soft-delete")
    assert Crate.objects.get().deleted_at is None
    assert "is restored" in page.inner_text(".messagelist")

    # The dashboard, for the reviewer.
    page.goto(f"{live_server.url}/admin/")
    page.wait_for_selector("#fx-dashboard svg")
    assert page.inner_text(".fx-card:has-text('Workers alive') .fx-card-value") == "1"
    assert page.inner_text(".fx-card:has-text('Crates') .fx-card-value") == "1"
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)

    assert not errors, f"JavaScript errors on the pages: {errors}"
    assert (SCREENSHOTS / "job_list_running.png").stat().st_size > 10_000
    context.close()


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_job_list_fits_1400_px_and_a_full_bar_is_labelled_legibly(
    live_server, django_user_model, browser, monkeypatch, scheme
):
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    django_user_model.objects.create_superuser("operator", "operator@example.invalid", PASSWORD)
    now = timezone.now()
    # The widest a row gets: a 64-character name and a version and a stage message with no place to break.
    for n, status in enumerate(["complete", "failed", "running", "queued", "cancelled"]):
        name = f"crate_{n}_" + "x" * 56
        CrateJob.objects.create(
            crate_name=name, normalized_name=name, status=status, requested_by="api",
            requested_version="1.0.0-alpha.1.2.3.4+build.20261208.abcdef", resolved_version="1.0.0-alpha.1.2.3",
            progress=100 if status == "complete" else 40,
            stage_message=f"Failed: https://docs.rs/crate/{name}/1.0.0-alpha.1.2.3/json answered 503",
            started_at=now - timedelta(minutes=3), finished_at=now if status != "running" else None,
            options={"force": True}, attempts=2, error_type="UpstreamUnavailable" if status == "failed" else "",
        )  # fmt: skip
    context = browser.new_context(viewport={"width": 1400, "height": 900}, color_scheme=scheme)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/?next=/admin/jobs/cratejob/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"job_list_1400_{scheme}.png"), full_page=True)
    widths = page.evaluate("""() => {
        const table = document.querySelector('#result_list');
        const header = [...table.querySelectorAll('thead th')].map(th => th.textContent.trim());
        const box = table.closest('#changelist-form') || table.parentElement;
        return {table: table.getBoundingClientRect().right, box: box.getBoundingClientRect().right,
                page: document.documentElement.clientWidth, scroll: document.documentElement.scrollWidth,
                header: header};
    }""")
    assert any("Duration" in h for h in widths["header"])
    assert widths["table"] <= widths["box"] + 1 and widths["scroll"] <= widths["page"], widths

    colours = page.evaluate("""() => {
        const bar = document.querySelector('.fx-progress.fx-status-complete');
        return {label: getComputedStyle(bar.querySelector('.fx-progress-label')).color,
                bar: getComputedStyle(bar.querySelector('.fx-progress-bar')).backgroundColor};
    }""")
    assert _contrast(colours["label"], colours["bar"]) >= 4.5, colours
    context.close()
