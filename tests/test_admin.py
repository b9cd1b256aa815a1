"""The operator portal (Django admin): every page and action, with permissions and CSRF.

Data is real rows in PostgreSQL; writes go through the real jobs/crates services. No worker runs
here (tests/test_browser.py drives a real one): enqueued jobs simply stay queued.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from crates.models import ApiKey, Chunk, Crate, CrateRelease, Document
from jobs.models import CrateJob, JobEvent
from jobs.runner import run_next_job
from jobs.services import enqueue_ingest

pytestmark = pytest.mark.django_db

FIXTURE_JSON = Path(__file__).parent / "fixtures" / "rustdoc" / "ferro_fixture.json.zst"
VIEW_PERMS = ["view_cratejob", "view_jobevent", "view_crate", "view_craterelease", "view_document", "view_chunk",
              "view_apikey"]
DOCS = """Counts things.

See [`Reset`] and [the reset method](struct.Counter.html#method.reset). <script>alert("x")</script>
[bad](javascript:alert(1))

# Examples

```
# use ferro_fixture::Counter;
let mut c = Counter::with_capacity(4);
c.bump();
```
"""


# --- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def readonly_client(django_user_model) -> Client:
    """Staff with only the view_* permissions."""
    user = django_user_model.objects.create_user("viewer", password="viewer-pass-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=VIEW_PERMS))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def nonstaff_client(django_user_model) -> Client:
    user = django_user_model.objects.create_user("outsider", password="outsider-pass-1", is_staff=False)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def crate() -> Crate:
    """ferro_fixture with an active release of two documents (one with chunks) and an old superseded one."""
    crate = Crate.objects.create(name="ferro_fixture", description="A fixture crate", latest_version="0.3.1")
    old = CrateRelease.objects.create(crate=crate, version="0.3.0", docs_source="html", state="superseded",
                                      document_count=1)
    Document.objects.create(release=old, path="ferro_fixture::OldThing", name="OldThing", kind="struct",
                            content_hash="0" * 64)
    release = CrateRelease.objects.create(
        crate=crate, version="0.3.1", docs_source="rustdoc-json", state="active", document_count=2, chunk_count=2,
        embedding_count=0, ingested_at=timezone.now(), format_version=57,
    )
    counter = Document.objects.create(
        release=release, path="ferro_fixture::Counter", name="Counter", kind="struct",
        signature="pub struct Counter { /* private fields */ }", docs=DOCS, content_hash="1" * 64,
        url="https://docs.rs/ferro_fixture/0.3.1/ferro_fixture/struct.Counter.html",
    )
    Document.objects.create(
        release=release, path="ferro_fixture::Counter::with_capacity", name="with_capacity", kind="method",
        parent_path=counter.path, signature="pub fn with_capacity(capacity: usize) -> Counter",
        docs="Makes a counter.", content_hash="2" * 64,
    )
    for ordinal in range(2):
        Chunk.objects.create(document=counter, release=release, ordinal=ordinal, text=f"chunk {ordinal}",
                             content_hash=str(ordinal) * 64)
    return crate


def _job(status: str, *, crate_name: str = "ferro_fixture", **fields) -> CrateJob:
    now = timezone.now()
    defaults = {
        "crate_name": crate_name, "normalized_name": crate_name.replace("-", "_").lower(), "status": status,
        "requested_by": "api", "started_at": None if status == "queued" else now - timedelta(seconds=30),
        "finished_at": now if status in CrateJob.FINISHED_STATUSES else None,
        "progress": 100 if status == "complete" else 40,
    }
    job = CrateJob.objects.create(**{**defaults, **fields})
    JobEvent.objects.create(job=job, event_type="created", message=f"Ingest of {crate_name} requested")
    return job


@pytest.fixture
def failed_job() -> CrateJob:
    job = _job("failed", error_type="UpstreamUnavailable", error_message="docs.rs answered 503 five times",
               traceback="Traceback (most recent call last):\n  File \"fetch.py\", line 1\nUpstreamUnavailable",
               stage_message="Failed: docs.rs answered 503", items_found=57, items_processed=12, documents=12)
    JobEvent.objects.create(job=job, event_type="failed", message="docs.rs answered 503 five times")
    return job


def _url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


# --- access control -------------------------------------------------------------------------------
PAGES = [
    ("index", ()),
    ("jobs_cratejob_changelist", ()),
    ("jobs_cratejob_live", ()),
    ("crates_crate_changelist", ()),
    ("crates_crate_add", ()),
    ("crates_document_changelist", ()),
    ("crates_document_search", ()),
    ("crates_apikey_add", ()),
]


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_and_non_staff_users_are_sent_to_the_login_page(client, nonstaff_client, name, args):
    for who in (client, nonstaff_client):
        response = who.get(_url(name, *args))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_object_pages_and_writes_need_staff(client, nonstaff_client, crate, failed_job):
    for url, method in [
        (_url("jobs_cratejob_change", failed_job.pk), "get"),
        (_url("jobs_cratejob_live_detail", failed_job.pk), "get"),
        (_url("jobs_cratejob_retry", failed_job.pk), "post"),
        (_url("crates_crate_change", crate.pk), "get"),
        (_url("crates_crate_soft_delete", crate.pk), "post"),
    ]:
        for who in (client, nonstaff_client):
            response = getattr(who, method)(url)
            assert response.status_code == 302 and "/login/" in response["Location"], url
    assert CrateJob.objects.count() == 1
    assert Crate.objects.get(pk=crate.pk).deleted_at is None


def test_read_only_staff_sees_everything_but_cannot_write(readonly_client, crate, failed_job):
    queued = _job("queued", crate_name="tokio")
    for url in [
        _url("index"),
        _url("jobs_cratejob_changelist"),
        _url("jobs_cratejob_change", queued.pk),
        _url("jobs_cratejob_live") + f"?id={queued.pk}",
        _url("crates_crate_changelist"),
        _url("crates_crate_change", crate.pk),
        _url("crates_document_changelist"),
        _url("crates_apikey_changelist"),
    ]:
        assert readonly_client.get(url).status_code == 200, url

    detail = readonly_client.get(_url("jobs_cratejob_change", queued.pk)).content.decode()
    assert "Cancel job" not in detail and "Re-ingest" not in detail
    crate_page = readonly_client.get(_url("crates_crate_change", crate.pk)).content.decode()
    assert "Soft delete" not in crate_page and "Hard delete" not in crate_page and ">Refresh<" not in crate_page

    forbidden = [
        ("post", _url("jobs_cratejob_cancel", queued.pk)),
        ("post", _url("jobs_cratejob_retry", failed_job.pk)),
        ("post", _url("jobs_cratejob_reingest", failed_job.pk)),
        ("get", _url("crates_crate_add")),
        ("post", _url("crates_crate_add")),
        ("post", _url("crates_crate_soft_delete", crate.pk)),
        ("post", _url("crates_crate_restore", crate.pk)),
        ("post", _url("crates_crate_refresh", crate.pk)),
        ("get", _url("crates_crate_delete", crate.pk)),
        ("post", _url("crates_crate_delete", crate.pk)),
        ("get", _url("crates_apikey_add")),
    ]
    for method, url in forbidden:
        response = getattr(readonly_client, method)(url, {"name": "serde", "confirmed": "yes"})
        assert response.status_code == 403, url

    # The bulk actions are not even offered, and posting one anyway does nothing.
    changelist = readonly_client.get(_url("jobs_cratejob_changelist")).content.decode()
    assert "cancel_selected" not in changelist
    readonly_client.post(_url("jobs_cratejob_changelist"),
                         {"action": "cancel_selected", "_selected_action": [str(queued.pk)]})
    readonly_client.post(_url("crates_crate_changelist"),
                         {"action": "soft_delete_selected", "_selected_action": [str(crate.pk)]})

    queued.refresh_from_db()
    assert queued.status == "queued" and queued.cancel_requested_at is None
    assert Crate.objects.get(pk=crate.pk).deleted_at is None
    assert CrateJob.objects.count() == 2 and ApiKey.objects.count() == 0


def test_staff_with_only_cancel_permission_can_cancel_but_not_retry(django_user_model, failed_job):
    user = django_user_model.objects.create_user("operator", password="operator-pass-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=[*VIEW_PERMS, "change_cratejob"]))
    client = Client()
    client.force_login(user)
    queued = _job("queued", crate_name="tokio")
    assert client.post(_url("jobs_cratejob_retry", failed_job.pk)).status_code == 403
    assert client.post(_url("jobs_cratejob_cancel", queued.pk)).status_code == 302
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_every_write_needs_the_csrf_token(django_user_model, crate):
    admin_user = django_user_model.objects.create_superuser("boss", "boss@example.invalid", "boss-pass-1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    queued = _job("queued", crate_name="tokio")
    writes = [
        _url("jobs_cratejob_cancel", queued.pk),
        _url("crates_crate_soft_delete", crate.pk),
        _url("crates_crate_refresh", crate.pk),
        _url("crates_crate_add"),
        _url("crates_apikey_add"),
    ]
    for url in writes:
        assert client.post(url, {"name": "serde"}).status_code == 403, url
    queued.refresh_from_db()
    assert queued.status == "queued"
    assert Crate.objects.get(pk=crate.pk).deleted_at is None
    assert CrateJob.objects.count() == 1 and ApiKey.objects.count() == 0

    # With the token from the page's form, the same write goes through.
    page = client.get(_url("jobs_cratejob_change", queued.pk)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post(_url("jobs_cratejob_cancel", queued.pk), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    queued.refresh_from_db()
    assert queued.status == "cancelled"


def test_actions_only_accept_post(admin_client, crate):
    queued = _job("queued", crate_name="tokio")
    assert admin_client.get(_url("jobs_cratejob_cancel", queued.pk)).status_code == 405
    assert admin_client.get(_url("crates_crate_soft_delete", crate.pk)).status_code == 405
    queued.refresh_from_db()
    assert queued.status == "queued"


# --- jobs -------------------------------------------------------------------------------------------
def test_job_list_shows_status_progress_and_live_hooks(admin_client, failed_job):
    running = _job("running", crate_name="tokio", progress=45, stage_message="Embedding chunks 120/260",
                   requested_by="mcp", resolved_version="1.40.0", requested_version="latest")
    html = admin_client.get(_url("jobs_cratejob_changelist")).content.decode()
    assert f'data-live-url="{_url("jobs_cratejob_live")}"' in html
    assert f'class="fx-badge fx-status-running" data-job-id="{running.pk}" data-job-field="status"' in html
    assert 'aria-valuenow="45"' in html and "width: 45%" in html
    assert "Embedding chunks 120/260" in html and "1.40.0" in html
    assert "fx-status-failed" in html and "MCP" in html
    assert "portal/portal.js" in html and "cdn" not in html.lower()
    assert "delete_selected" not in html  # jobs are not deleted by hand


def test_job_list_filters_and_searches_by_crate_or_job_id(admin_client, failed_job):
    other = _job("complete", crate_name="serde-json", requested_by="admin")
    by_status = admin_client.get(_url("jobs_cratejob_changelist"), {"status__exact": "failed"})
    assert list(by_status.context["cl"].result_list) == [failed_job]
    by_requester = admin_client.get(_url("jobs_cratejob_changelist"), {"requested_by__exact": "admin"})
    assert list(by_requester.context["cl"].result_list) == [other]
    by_name = admin_client.get(_url("jobs_cratejob_changelist"), {"q": "serde_json"})
    assert list(by_name.context["cl"].result_list) == [other]
    by_id_prefix = admin_client.get(_url("jobs_cratejob_changelist"), {"q": str(failed_job.pk)[:8]})
    assert list(by_id_prefix.context["cl"].result_list) == [failed_job]
    by_full_id = admin_client.get(_url("jobs_cratejob_changelist"), {"q": str(other.pk)})
    assert list(by_full_id.context["cl"].result_list) == [other]
    today = admin_client.get(_url("jobs_cratejob_changelist"),
                             {"created_at__gte": timezone.localdate().isoformat()})
    assert set(today.context["cl"].result_list) == {failed_job, other}


def test_live_list_endpoint_returns_the_shared_job_serialisation(admin_client, failed_job):
    running = _job("running", crate_name="tokio", progress=61, stage_message="Storing batch 3")
    since = (timezone.now() - timedelta(minutes=5)).isoformat()
    response = admin_client.get(_url("jobs_cratejob_live"),
                                {"id": [str(running.pk), str(failed_job.pk), "not-a-uuid"], "since": since})
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    data = response.json()
    jobs = {job["id"]: job for job in data["jobs"]}
    assert set(jobs) == {str(running.pk), str(failed_job.pk)}
    assert jobs[str(running.pk)]["progress"] == 61 and jobs[str(running.pk)]["stage_message"] == "Storing batch 3"
    assert jobs[str(failed_job.pk)]["status"] == "failed"
    assert data["new_jobs"] == 2 and data["server_time"]


def test_live_detail_endpoint_includes_the_event_timeline(admin_client, failed_job):
    data = admin_client.get(_url("jobs_cratejob_live_detail", failed_job.pk)).json()
    assert data["job"]["id"] == str(failed_job.pk)
    assert [e["type"] for e in data["job"]["events"]] == ["created", "failed"]
    assert admin_client.get(_url("jobs_cratejob_live_detail", "00000000-0000-0000-0000-000000000000")).status_code \
        == 404
    assert admin_client.get(_url("jobs_cratejob_change", "nonsense")).status_code == 404


def test_job_detail_shows_counters_error_traceback_and_timeline(admin_client, failed_job):
    html = admin_client.get(_url("jobs_cratejob_change", failed_job.pk)).content.decode()
    assert "UpstreamUnavailable" in html and "docs.rs answered 503 five times" in html
    # The traceback is there but collapsed.
    assert re.search(r'<details class="fx-traceback"\s*>\s*<summary>Traceback</summary>', html)
    assert "File &quot;fetch.py&quot;, line 1" in html
    assert '<dd data-field="items_found">57</dd>' in html and '<dd data-field="documents">12</dd>' in html
    assert html.count('class="fx-event fx-event-') == 2
    assert f'data-live-url="{_url("jobs_cratejob_live_detail", failed_job.pk)}"' in html
    # A failed job offers retry and re-ingest; cancel is hidden until the job is active again.
    assert re.search(r'action="[^"]+/cancel/" data-show-when="active"\s+hidden', html)
    assert re.search(r'action="[^"]+/retry/" data-show-when="retryable"\s*>', html)


def test_a_whole_crate_removal_shows_all_versions_not_the_internal_wildcard(admin_client, crate):
    """requested_version '*' is how a removal of every version is stored; pages say what it means, as the
    API (version null) and MCP ('all versions') do."""
    job = _job("complete", operation="remove", requested_version="*")
    pages = [
        admin_client.get(_url("jobs_cratejob_changelist")),
        admin_client.get(_url("jobs_cratejob_change", job.pk)),
        admin_client.get(_url("crates_crate_change", crate.pk)),
    ]
    for page in pages:
        html = page.content.decode()
        assert "all versions" in html, page.request["PATH_INFO"]
        assert not re.search(r">\s*\*\s*<|ferro_fixture \*", html), page.request["PATH_INFO"]


def test_job_page_shows_options_as_words_not_a_python_dict(admin_client):
    job = _job("complete", options={"force": True, "soft": False})
    html = admin_client.get(_url("jobs_cratejob_change", job.pk)).content.decode()
    assert "<code>force</code>" in html and "{&#x27;force&#x27;" not in html and "True" not in html


def test_cancel_a_queued_job_logs_it_in_the_admin_log_and_job_events(admin_client, admin_user):
    queued = _job("queued", crate_name="tokio")
    response = admin_client.post(_url("jobs_cratejob_cancel", queued.pk))
    assert response.status_code == 302 and response["Location"] == _url("jobs_cratejob_change", queued.pk)
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert set(queued.events.values_list("event_type", flat=True)) >= {"cancel_requested", "cancelled"}
    entry = LogEntry.objects.get(object_id=str(queued.pk))
    assert entry.user == admin_user and entry.action_flag == CHANGE and "Cancel" in entry.get_change_message()


def test_cancel_a_running_job_asks_the_worker_to_stop(admin_client):
    running = _job("running", crate_name="tokio")
    admin_client.post(_url("jobs_cratejob_cancel", running.pk))
    running.refresh_from_db()
    assert running.status == "running" and running.cancel_requested_at is not None


def test_cancel_a_finished_job_is_refused_with_a_message(admin_client, failed_job):
    response = admin_client.post(_url("jobs_cratejob_cancel", failed_job.pk), follow=True)
    assert "already finished" in response.content.decode()
    failed_job.refresh_from_db()
    assert failed_job.status == "failed" and not LogEntry.objects.exists()


def test_retry_makes_a_new_job_resuming_the_failed_one(admin_client, failed_job):
    response = admin_client.post(_url("jobs_cratejob_retry", failed_job.pk))
    retry = CrateJob.objects.exclude(pk=failed_job.pk).get()
    assert response["Location"] == _url("jobs_cratejob_change", retry.pk)
    assert retry.status == "queued" and retry.requested_by == "admin" and retry.retry_of_id == failed_job.pk
    assert failed_job.events.filter(event_type="retried").exists()
    assert LogEntry.objects.get(object_id=str(retry.pk)).action_flag == ADDITION


def test_reingest_queues_a_forced_ingest_of_the_same_crate(admin_client):
    done = _job("complete", crate_name="serde", requested_version="1.0.210")
    admin_client.post(_url("jobs_cratejob_reingest", done.pk))
    new = CrateJob.objects.exclude(pk=done.pk).get()
    assert (new.crate_name, new.requested_version, new.options, new.requested_by) == (
        "serde", "1.0.210", {"force": True}, "admin")


def test_reingest_refuses_a_running_job(admin_client):
    running = _job("running", crate_name="serde")
    response = admin_client.post(_url("jobs_cratejob_reingest", running.pk), follow=True)
    assert "Only a finished ingest job can be re-ingested" in response.content.decode()
    assert CrateJob.objects.count() == 1


def test_bulk_cancel_cancels_active_jobs_and_reports_the_rest(admin_client, failed_job):
    first, second = _job("queued", crate_name="tokio"), _job("running", crate_name="serde")
    response = admin_client.post(
        _url("jobs_cratejob_changelist"),
        {"action": "cancel_selected", "_selected_action": [str(first.pk), str(second.pk), str(failed_job.pk)]},
        follow=True,
    )
    text = response.content.decode()
    assert "Cancellation requested for 2 job(s)" in text and "already finished" in text
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == "cancelled" and second.cancel_requested_at is not None
    assert LogEntry.objects.filter(action_flag=CHANGE).count() == 2


def test_bulk_retry_action(admin_client, failed_job):
    admin_client.post(_url("jobs_cratejob_changelist"),
                      {"action": "retry_selected", "_selected_action": [str(failed_job.pk)]})
    assert CrateJob.objects.filter(retry_of=failed_job, status="queued").count() == 1


# --- crates -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("term", ["serde-json", "Serde_Json", "SERDE-J", "serde_json"])
def test_crate_list_search_treats_dash_underscore_and_case_as_one_name(admin_client, crate, term):
    serde_json = Crate.objects.create(name="serde_json", description="A JSON serialization file format")
    found = admin_client.get(_url("crates_crate_changelist"), {"q": term})
    assert list(found.context["cl"].result_list) == [serde_json]
    by_description = admin_client.get(_url("crates_crate_changelist"), {"q": "fixture crate"})
    assert list(by_description.context["cl"].result_list) == [crate]


def test_crate_list_shows_the_active_release_and_latest_job(admin_client, crate):
    job = _job("running", crate_name="ferro_fixture", progress=10)
    Crate.objects.create(name="gone_crate", deleted_at=timezone.now())
    response = admin_client.get(_url("crates_crate_changelist"))
    html = response.content.decode()
    rows = {c.name: c for c in response.context["cl"].result_list}
    assert rows["ferro_fixture"].active_version == "0.3.1"
    assert rows["ferro_fixture"].active_source == "rustdoc-json"
    assert rows["ferro_fixture"].latest_job_id == job.pk and rows["ferro_fixture"].latest_job_status == "running"
    assert "rustdoc JSON" in html and _url("jobs_cratejob_change", job.pk) in html
    assert rows["gone_crate"].is_deleted and "icon-yes.svg" in html
    alive = admin_client.get(_url("crates_crate_changelist"), {"state": "alive"})
    assert [c.name for c in alive.context["cl"].result_list] == ["ferro_fixture"]


def test_crate_list_and_page_show_the_newest_version_not_the_last_ingested(admin_client, crate):
    """Two active releases: an older version ingested after the newer one (``ingest_crate --version``).
    Search, get_item and the API serve the newest by SemVer; the portal must show that one too."""
    CrateRelease.objects.create(
        crate=crate, version="0.2.9", docs_source="html", state="active", document_count=7,
        ingested_at=timezone.now() + timedelta(minutes=5),
    )  # fmt: skip
    rows = {c.name: c for c in admin_client.get(_url("crates_crate_changelist")).context["cl"].result_list}
    assert rows["ferro_fixture"].active_version == "0.3.1"
    assert rows["ferro_fixture"].active_source == "rustdoc-json" and rows["ferro_fixture"].active_documents == 2
    page = admin_client.get(_url("crates_crate_change", crate.pk))
    assert page.context["active_release"].version == "0.3.1"
    assert "0.2.9" in page.content.decode()  # still listed among the releases


def test_add_crate_enqueues_an_ingest_and_redirects_to_the_job(admin_client, admin_user):
    form = admin_client.get(_url("crates_crate_add")).content.decode()
    assert 'name="name"' in form and 'name="version"' in form and 'name="force"' in form
    response = admin_client.post(_url("crates_crate_add"), {"name": "serde-json", "version": "1.0.128", "force": "on"})
    job = CrateJob.objects.get()
    assert response.status_code == 302 and response["Location"] == _url("jobs_cratejob_change", job.pk)
    assert (job.crate_name, job.requested_version, job.options, job.requested_by, job.status) == (
        "serde-json", "1.0.128", {"force": True}, "admin", "queued")
    assert job.events.get().event_type == "created"
    assert LogEntry.objects.get(object_id=str(job.pk)).user == admin_user


def test_add_crate_without_version_means_latest_and_a_duplicate_is_reused(admin_client):
    admin_client.post(_url("crates_crate_add"), {"name": "tokio"})
    response = admin_client.post(_url("crates_crate_add"), {"name": "Tokio", "version": ""}, follow=True)
    job = CrateJob.objects.get()
    assert job.requested_version == "latest"
    assert "already queued" in response.content.decode()


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "9lives"}, "must start with an ASCII letter"),
    ({"name": "serde json"}, "only ASCII letters, digits"),
    ({"name": "serde", "version": "1.0"}, "exact SemVer version"),
    ({"name": ""}, "This field is required"),
])
def test_add_crate_rejects_bad_input_with_an_actionable_message(admin_client, data, message):
    response = admin_client.post(_url("crates_crate_add"), data)
    assert response.status_code == 200 and message in response.content.decode()
    assert not CrateJob.objects.exists()


def test_crate_detail_shows_releases_jobs_and_actions(admin_client, crate):
    _job("complete", crate_name="ferro_fixture")
    html = admin_client.get(_url("crates_crate_change", crate.pk)).content.decode()
    assert "0.3.1" in html and "0.3.0" in html and "Superseded" in html
    assert "Soft delete" in html and "Hard delete" in html and "Refresh" in html
    assert "?crate=ferro_fixture" in html  # browse documents / search links
    assert 'class="fx-badge fx-status-complete"' in html


@pytest.mark.django_db(transaction=True)
def test_soft_delete_is_the_removal_job_and_restore_undoes_it(admin_client, crate):
    """The admin queues the same soft-removal job as the API and MCP (it first stops running ingests)."""
    running = _job("running", crate_name="ferro_fixture", attempts=1)
    response = admin_client.post(_url("crates_crate_soft_delete", crate.pk))
    removal = CrateJob.objects.get(operation="remove")
    assert response.status_code == 302 and response["Location"] == _url("jobs_cratejob_change", removal.pk)
    assert (removal.options, removal.requested_by, removal.requested_version) == ({"soft": True}, "admin", "*")
    running.refresh_from_db()
    assert running.cancel_requested_at is not None  # asked to stop before its release could bring the crate back
    crate.refresh_from_db()
    assert not crate.is_deleted  # hidden by the job, not by the request

    CrateJob.objects.filter(pk=running.pk).update(status="cancelled", finished_at=timezone.now())
    assert run_next_job() == "complete"
    crate.refresh_from_db()
    assert crate.is_deleted
    assert "Soft-deleted" in admin_client.get(_url("crates_crate_change", crate.pk)).content.decode()
    admin_client.post(_url("crates_crate_restore", crate.pk))
    crate.refresh_from_db()
    assert not crate.is_deleted
    messages = [e.get_change_message() for e in LogEntry.objects.order_by("action_time")]
    assert messages == [f"Soft delete queued (job {removal.pk}).", "Restored."]


@pytest.mark.django_db(transaction=True)
def test_bulk_soft_delete_restore_and_refresh_actions(admin_client, crate):
    other = Crate.objects.create(name="anyhow")
    ids = [str(crate.pk), str(other.pk)]
    admin_client.post(_url("crates_crate_changelist"), {"action": "soft_delete_selected", "_selected_action": ids})
    removals = CrateJob.objects.filter(operation="remove", options={"soft": True}, requested_by="admin")
    assert removals.count() == 2
    assert run_next_job() == "complete" and run_next_job() == "complete"
    assert Crate.objects.filter(deleted_at__isnull=False).count() == 2
    admin_client.post(_url("crates_crate_changelist"), {"action": "restore_selected", "_selected_action": ids})
    assert Crate.objects.filter(deleted_at__isnull=True).count() == 2
    admin_client.post(_url("crates_crate_changelist"), {"action": "refresh_selected", "_selected_action": ids})
    jobs = CrateJob.objects.filter(operation="ingest").order_by("crate_name")
    assert [(j.crate_name, j.requested_version, j.operation) for j in jobs] == [
        ("anyhow", "latest", "ingest"), ("ferro_fixture", "latest", "ingest")]


def test_refresh_queues_an_ingest_of_the_newest_release(admin_client, crate):
    response = admin_client.post(_url("crates_crate_refresh", crate.pk))
    job = CrateJob.objects.get()
    assert response["Location"] == _url("jobs_cratejob_change", job.pk)
    assert (job.operation, job.requested_version, job.options) == ("ingest", "latest", {"force": False})


def test_hard_delete_confirmation_states_what_will_be_deleted(admin_client, crate):
    page = admin_client.get(_url("crates_crate_delete", crate.pk))
    assert page.status_code == 200
    summary = page.context["summaries"][0]
    assert (summary.releases, summary.documents, summary.chunks, summary.embeddings) == (2, 3, 2, 0)
    assert summary.versions == ["0.3.0", "0.3.1"]
    html = page.content.decode()
    assert "permanently deletes" in html and 'name="confirmed" value="yes"' in html
    assert not CrateJob.objects.exists()  # looking is harmless

    response = admin_client.post(_url("crates_crate_delete", crate.pk), {"confirmed": "yes"})
    job = CrateJob.objects.get()
    assert response["Location"] == _url("jobs_cratejob_change", job.pk)
    assert (job.operation, job.options, job.requested_by) == ("remove", {"soft": False}, "admin")
    assert Crate.objects.filter(pk=crate.pk).exists()  # the worker deletes; the admin only queues


def test_bulk_hard_delete_asks_first_then_queues_removals(admin_client, crate):
    other = Crate.objects.create(name="anyhow")
    ids = [str(crate.pk), str(other.pk)]
    page = admin_client.post(_url("crates_crate_changelist"), {"action": "hard_delete_selected",
                                                               "_selected_action": ids})
    assert page.status_code == 200 and page.context["totals"]["documents"] == 3
    assert not CrateJob.objects.exists()
    admin_client.post(_url("crates_crate_changelist"), {"action": "hard_delete_selected", "_selected_action": ids,
                                                        "confirmed": "yes"})
    assert sorted(CrateJob.objects.filter(operation="remove").values_list("crate_name", flat=True)) == [
        "anyhow", "ferro_fixture"]


# --- documents and search --------------------------------------------------------------------------
def test_document_list_defaults_to_active_releases_and_filters_by_crate_and_kind(admin_client, crate):
    default = admin_client.get(_url("crates_document_changelist"))
    assert sorted(d.path for d in default.context["cl"].result_list) == [
        "ferro_fixture::Counter", "ferro_fixture::Counter::with_capacity"]
    methods = admin_client.get(_url("crates_document_changelist"), {"crate": "ferro_fixture", "kind__exact": "method"})
    assert [d.path for d in methods.context["cl"].result_list] == ["ferro_fixture::Counter::with_capacity"]
    everything = admin_client.get(_url("crates_document_changelist"), {"release_state": "all"})
    assert len(everything.context["cl"].result_list) == 3
    found = admin_client.get(_url("crates_document_changelist"), {"q": "with_cap"})
    assert [d.name for d in found.context["cl"].result_list] == ["with_capacity"]


def test_document_list_filters_take_any_spelling_and_unknown_values(admin_client, crate):
    """The crate filter is a URL parameter ('Browse documents' links it); typed by hand it may be spelt as
    the crate is written. An unknown release state lists nothing instead of querying for it."""
    spelt = admin_client.get(_url("crates_document_changelist"), {"crate": "Ferro-Fixture"})
    assert len(spelt.context["cl"].result_list) == 2
    unknown = admin_client.get(_url("crates_document_changelist"), {"release_state": "retired"})
    assert unknown.status_code == 200 and list(unknown.context["cl"].result_list) == []


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("crates_document_changelist", {"crate": "ferro\x00fixture"}),
        ("crates_document_changelist", {"kind__exact": "str\x00uct"}),
        ("jobs_cratejob_changelist", {"status__exact": "\x00"}),
        ("crates_craterelease_changelist", {"state__exact": "\x00"}),
        ("crates_crate_changelist", {"q": "se\x00rde"}),
    ],
)
def test_a_nul_byte_in_a_portal_url_is_a_400_not_a_server_error(admin_client, crate, name, params):
    """PostgreSQL refuses NUL in text: a filter value carrying one reached it and the page answered 500."""
    response = admin_client.get(_url(name), params)
    assert response.status_code == 400 and b"NUL" in response.content


def test_document_detail_renders_markdown_and_highlights_code_safely(admin_client, crate):
    doc = Document.objects.get(path="ferro_fixture::Counter")
    html = admin_client.get(_url("crates_document_change", doc.pk)).content.decode()
    assert '<div class="highlight"><pre><span></span><span class="k">pub</span>' in html  # the signature
    assert '<h1>Examples</h1>' in html
    assert '<span class="n">Counter</span><span class="p">::</span><span class="n">with_capacity</span>' in html
    assert "use ferro_fixture::Counter" not in html  # rustdoc's hidden `# ` line
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    assert "javascript:" not in html
    assert 'href="https://docs.rs/ferro_fixture/0.3.1/ferro_fixture/struct.Counter.html#method.reset"' in html
    assert 'id="fx-docsrs-link"' in html
    assert "with_capacity" in html  # the child item is listed
    # Documents are derived data: no change form, no delete.
    assert 'type="submit"' not in html.split('id="content"')[1].split("logout")[0]


def test_search_page_without_a_query_shows_only_the_form(admin_client, crate):
    response = admin_client.get(_url("crates_document_search"))
    assert response.status_code == 200 and not response.context["searched"]
    choices = dict(response.context["form"].fields["crate"].choices)
    assert "ferro_fixture" in choices


def test_search_page_reports_a_bad_filter_instead_of_no_results(admin_client, crate, settings):
    settings.EMBEDDING_PROVIDER = "hash"
    response = admin_client.get(_url("crates_document_search"), {"q": "counter", "crate": "ferro_fixture",
                                                                  "version": "9.9.9"})
    assert response.status_code == 200 and response.context["error"]
    assert "9.9.9" in response.context["error"]


def test_search_page_refuses_a_version_that_is_not_exact_as_the_api_does(admin_client, crate, settings):
    settings.EMBEDDING_PROVIDER = "hash"
    response = admin_client.get(_url("crates_document_search"), {"q": "counter", "version": "0.3"})
    assert response.status_code == 200 and not response.context["searched"]
    assert "Invalid version '0.3'" in response.context["form"].errors["version"][0]
    latest = admin_client.get(_url("crates_document_search"), {"q": "counter", "version": "latest"})
    assert latest.context["searched"] and not latest.context["error"]


# --- dashboard and API keys -----------------------------------------------------------------------
def test_dashboard_shows_counts_jobs_workers_failures_and_charts(admin_client, crate, failed_job):
    _job("queued", crate_name="tokio")
    _job("running", crate_name="serde")
    _job("complete", crate_name="anyhow", documents=600, started_at=timezone.now() - timedelta(minutes=2))
    response = admin_client.get(_url("index"))
    html = response.content.decode()
    dashboard = html.split('<div class="fx-dashboard"')[1].split('id="content-main"')[0]
    values = re.findall(r'<span class="fx-card-value">([^<]+)</span><span class="fx-card-label">([^<]+)<', dashboard)
    cards = {label: value for value, label in values}
    assert cards["Crates"] == "1" and cards["Documents"] == "2" and cards["Chunks"] == "2"
    assert cards["Jobs queued"] == "1" and cards["Running"] == "1" and cards["Failed (24 h)"] == "1"
    assert cards["Workers alive"] == "0" and "manage.py qcluster" in dashboard
    assert "docs.rs answered 503 five times" in dashboard
    assert dashboard.count("<svg") == 2 and 'class="fx-chart-complete"' in dashboard
    assert 'class="fx-chart-throughput"' in dashboard and "600 documents ingested" in dashboard


def test_api_key_is_shown_once_and_stored_as_a_hash(admin_client, admin_user):
    response = admin_client.post(_url("crates_apikey_add"), {"name": "ci-agent"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    plaintext = re.search(r'id="fx-secret" class="fx-secret-value"', response.content.decode()) and \
        re.search(r'readonly value="(fdx_[^"]+)"', response.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert key.name == "ci-agent" and key.key_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert LogEntry.objects.get(object_id=str(key.pk)).action_flag == ADDITION
    change = admin_client.get(reverse("admin:crates_apikey_change", args=[key.pk])).content.decode()
    assert plaintext not in change and key.key_hash not in change
    listing = admin_client.get(_url("crates_apikey_changelist")).content.decode()
    assert plaintext not in listing and key.prefix in listing


def test_api_key_revoke_action(admin_client):
    admin_client.post(_url("crates_apikey_add"), {"name": "old-laptop"})
    key = ApiKey.objects.get()
    admin_client.post(_url("crates_apikey_changelist"), {"action": "revoke_selected",
                                                         "_selected_action": [str(key.pk)]})
    key.refresh_from_db()
    assert not key.is_active


def test_api_key_needs_a_name(admin_client):
    response = admin_client.post(_url("crates_apikey_add"), {"name": "  "})
    assert response.status_code == 200 and not ApiKey.objects.exists()


def test_enqueue_from_elsewhere_shows_up_in_the_list(admin_client):
    result = enqueue_ingest(name="log", requested_by="cli")
    html = admin_client.get(_url("jobs_cratejob_changelist")).content.decode()
    assert str(result.job.pk)[:8] in html and "CLI" in html


@pytest.mark.django_db(transaction=True)  # the pipeline commits batch by batch
def test_search_page_runs_the_hybrid_search_on_ingested_docs(admin_client, settings):
    from crates.pipeline.ingest import run_ingest
    from crates.pipeline.types import NullProgress

    settings.EMBEDDING_PROVIDER = "hash"
    run_ingest(name="ferro-fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
    url = _url("crates_document_search")

    response = admin_client.get(url, {"q": "parse a log level", "crate": "ferro-fixture"})
    results = response.context["results"]
    top = results[0]["hit"]
    assert top.path == "ferro_fixture::parse_log_level" and top.kind == "function"
    assert "keyword" in top.signals
    html = response.content.decode()
    doc = Document.objects.get(path=top.path, release__state="active")
    assert results[0]["doc_id"] == doc.pk and _url("crates_document_change", doc.pk) in html
    assert html.count('class="fx-hit"') == len(results) and 'class="fx-signal fx-signal-on"' in html
    # Docs ingested from a local file keep a docs.rs-relative page path, which is no link to docs.rs.
    assert not top.url.startswith("http") and "docs.rs ↗" not in html
    # A bare ?q= link keeps every signal ticked and the default limit.
    assert response.context["form"]["signals"].value() == ["vector", "keyword", "path", "type"]

    only_functions = admin_client.get(url, {"q": "counter", "kinds": ["function"], "limit": "5"}).context["results"]
    assert only_functions and {r["hit"].kind for r in only_functions} == {"function"} and len(only_functions) <= 5

    # A type query (rustdoc syntax) in the same box: the type signal, and how each hit matched.
    typed = admin_client.get(url, {"q": "&Mutex<T> -> MutexGuard<T>", "crate": "ferro-fixture"})
    assert typed.context["results"][0]["hit"].path == "ferro_fixture::sync::Mutex::lock"
    assert "type match: <code>&amp;Mutex&lt;T&gt; → MutexGuard&lt;T&gt;</code>" in typed.content.decode()

    keyword_only = admin_client.get(url, {"q": "log level", "signals": ["keyword"]}).context["results"]
    assert keyword_only and all(r["hit"].signals == ["keyword"] for r in keyword_only)

    # A path with a crate chosen is looked up as get_item does, saying how it matched (never another item).
    folded = admin_client.get(url, {"q": "FERRO_FIXTURE::SYNC::MUTEX", "crate": "ferro-fixture"})
    detail = folded.context["item"]["detail"]
    assert (detail.path, detail.matched) == ("ferro_fixture::sync::Mutex", "case_insensitive")
    assert "only case-insensitive match of <code>FERRO_FIXTURE::SYNC::MUTEX</code>" in folded.content.decode()
    exact = admin_client.get(url, {"q": "ferro_fixture::sync::Mutex", "crate": "ferro-fixture"}).context["item"]
    assert exact["detail"].matched == "exact" and exact["doc_id"]
    assert admin_client.get(url, {"q": "parse a log level", "crate": "ferro-fixture"}).context["item"] is None

    # A query naming a crate nobody added says so, and links to adding it.
    missing = admin_client.get(url, {"q": "uuid v4 random"})
    assert missing.context["missing_crates"] == ["uuid"] and "add_rust_crate" in missing.context["notice"]
    html = missing.content.decode()
    assert 'id="fx-missing-crate"' in html and _url("crates_crate_add") + "?name=uuid" in html
    assert admin_client.get(_url("crates_crate_add"), {"name": "uuid"}).context["form"]["name"].value() == "uuid"
    assert not admin_client.get(url, {"q": "parse a log level"}).context["notice"]  # 'log' the word, not the crate

    # A soft-deleted crate is out of search, and the page says so rather than showing nothing.
    Crate.objects.update(deleted_at=timezone.now())
    gone = admin_client.get(url, {"q": "parse a log level", "crate": "ferro-fixture"})
    assert "soft-deleted" in gone.context["error"] and not gone.context["results"]
    assert "ferro-fixture (soft-deleted)" in gone.content.decode()


@pytest.mark.django_db(transaction=True)  # the pipeline commits batch by batch
def test_crate_page_links_docs_rs_only_for_docs_fetched_from_it(admin_client, settings):
    from crates.pipeline.ingest import run_ingest
    from crates.pipeline.types import NullProgress

    settings.EMBEDDING_PROVIDER = "hash"
    result = run_ingest(name="ferro-fixture", progress=NullProgress(), json_file=FIXTURE_JSON)
    crate = CrateRelease.objects.get(pk=result.release_id).crate
    local_page = admin_client.get(_url("crates_crate_change", crate.pk)).content.decode()
    assert "docs.rs ↗" not in local_page  # a private crate has no page there

    CrateRelease.objects.filter(pk=result.release_id).update(artifact_sha256="ab" * 32)  # as if fetched
    fetched_page = admin_client.get(_url("crates_crate_change", crate.pk)).content.decode()
    assert f'href="{settings.DOCSRS_BASE_URL}/crate/ferro-fixture/0.3.1"' in fetched_page


# --- what a finished job offers -------------------------------------------------------------------


@pytest.mark.parametrize("error_type", ["CrateNotFound", "VersionNotFound", "InvalidCrateName"])
def test_a_permanent_failure_offers_no_retry_anywhere(admin_client, error_type):
    from crates.errors import JobStateError
    from jobs import selectors as job_selectors
    from jobs import services as job_services

    job = _job("failed", error_type=error_type, error_message="Crate 'nope' does not exist on crates.io.")
    html = admin_client.get(_url("jobs_cratejob_change", job.pk)).content.decode()
    assert not re.search(r'action="[^"]+/retry/"', html)  # not merely hidden: live updates could show it
    assert job_selectors.job_as_dict(job)["retryable"] is False
    assert job_selectors.job_status(job_id=job.pk)["retryable"] is False
    with pytest.raises(JobStateError, match="retrying cannot help"):
        job_services.retry_job(job_id=job.pk, requested_by="api")


def test_a_transient_failure_and_a_cancelled_job_offer_retry(admin_client, failed_job):
    from jobs import selectors as job_selectors

    cancelled = _job("cancelled")
    for job in (failed_job, cancelled):
        html = admin_client.get(_url("jobs_cratejob_change", job.pk)).content.decode()
        assert re.search(r'action="[^"]+/retry/" data-show-when="retryable"\s*>', html)
        assert job_selectors.job_status(job_id=job.pk)["retryable"] is True
    assert job_selectors.job_status(job_id=_job("running").pk)["retryable"] is False


def test_the_result_panel_shows_json(admin_client):
    job = _job("complete", result={"up_to_date": False, "documents": 12, "crate": "ferro_fixture", "note": None})
    html = admin_client.get(_url("jobs_cratejob_change", job.pk)).content.decode()
    panel = re.search(r'<pre class="fx-json">(.*?)</pre>', html, re.S).group(1)
    import html as html_lib
    import json

    assert json.loads(html_lib.unescape(panel)) == job.result
    assert "False" not in panel and "None" not in panel


def test_the_site_serves_a_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/")
