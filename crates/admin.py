"""The crates side of the operator portal: crates, documents, the search page and API keys.

Views are thin: they check the model permission that matches the write, call a service
(crates.services, jobs.services, crates.apikeys) or selector, write the admin log, and render.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Count, IntegerField, OuterRef, QuerySet, Subquery, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from crates import admin_forms, portal_selectors, selectors
from crates.admin_common import PortalAdminMixin, ReadOnlyAdminMixin, job_admin_url
from crates.apikeys import create_api_key, revoke_api_key
from crates.errors import CrateNotFound, FerrodexError
from crates.models import ApiKey, Chunk, Crate, CrateRelease, Document, Project, ProjectPackage
from crates.names import normalize_crate_name, semver_key
from crates.selectors import search_notice
from crates.services import restore_crate
from crates.templatetags.portal import format_age, status_badge_html
from jobs.models import CrateJob
from jobs.services import EnqueueResult, enqueue_ingest, enqueue_removal

logger = logging.getLogger(__name__)

REQUESTED_BY_ADMIN = CrateJob.RequestedBy.ADMIN

admin.site.site_header = "Ferrodex"
admin.site.site_title = "Ferrodex admin"
admin.site.index_title = "Operations"
# The top navigation (templates/admin/base_site.html) replaces the sidebar; tables need the width.
admin.site.enable_nav_sidebar = False
# There is no public site to "view": the API lives under /api/v1/ and has its own docs page.
admin.site.site_url = None


class TitledChangeListMixin:
    """A plain title ("Crates") instead of Django's "Select crate to change"."""

    changelist_title = ""

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        extra_context = {"title": self.changelist_title or self.opts.verbose_name_plural.capitalize(),
                         **(extra_context or {})}
        return super().changelist_view(request, extra_context=extra_context)


# --- crates ---------------------------------------------------------------------------------------
class DeletedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("alive", "Active"), ("deleted", "Soft-deleted")]

    def queryset(self, request, queryset):
        if self.value() == "alive":
            return queryset.filter(deleted_at__isnull=True)
        if self.value() == "deleted":
            return queryset.filter(deleted_at__isnull=False)
        return queryset


@admin.register(Crate)
class CrateAdmin(PortalAdminMixin, TitledChangeListMixin, admin.ModelAdmin):
    list_display = [
        "name", "active_version_column", "source_column", "documents_column", "chunks_column",
        "embeddings_column", "last_updated_column", "latest_job_column", "deleted_column",
    ]
    list_filter = [DeletedFilter]
    search_fields = ["name", "normalized_name", "description"]
    search_help_text = "Crate name or words from its description."
    actions = ["refresh_selected", "soft_delete_selected", "restore_selected", "hard_delete_selected"]
    list_per_page = 50

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Also by the lookup key, as the API, MCP and the Jobs list do: 'serde-json' finds serde_json
        (crates.io treats '-' and '_' as one name; Django's word search would only match the literal)."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if not term or " " in term:
            return results, may_have_duplicates
        by_key = queryset.filter(normalized_name__icontains=normalize_crate_name(term))
        return results | by_key, may_have_duplicates

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The release search, get_item and the API serve by default: the newest active one by SemVer, which the
        # store keeps as Crate.latest_version (not the last ingested: an older version may be added later).
        newest_first = Case(When(version=OuterRef("latest_version"), then=Value(0)), default=Value(1),
                            output_field=IntegerField())  # fmt: skip
        active = (
            CrateRelease.objects.filter(crate=OuterRef("pk"), state=CrateRelease.State.ACTIVE)
            .annotate(newest_first=newest_first)
            .order_by("newest_first", "-ingested_at", "-created_at")
        )
        latest_job = CrateJob.objects.filter(normalized_name=OuterRef("normalized_name")).order_by("-created_at")
        return super().get_queryset(request).annotate(
            active_version=Subquery(active.values("version")[:1]),
            active_source=Subquery(active.values("docs_source")[:1]),
            active_documents=Subquery(active.values("document_count")[:1]),
            active_chunks=Subquery(active.values("chunk_count")[:1]),
            active_embeddings=Subquery(active.values("embedding_count")[:1]),
            active_ingested_at=Subquery(active.values("ingested_at")[:1]),
            latest_job_status=Subquery(latest_job.values("status")[:1]),
            latest_job_id=Subquery(latest_job.values("id")[:1]),
        )

    # --- permissions: each write maps to a model permission ---------------------------------------
    def has_refresh_permission(self, request: HttpRequest, obj: Crate | None = None) -> bool:
        return request.user.has_perm("crates.change_crate")

    # Hiding and restoring change the crate's state, like a refresh; a hard delete needs "delete".
    has_soft_delete_permission = has_refresh_permission
    has_restore_permission = has_refresh_permission

    # --- list columns ------------------------------------------------------------------------------
    @admin.display(description="Active version", ordering="active_version")
    def active_version_column(self, crate: Crate) -> str:
        return crate.active_version or "—"

    @admin.display(description="Source", ordering="active_source")
    def source_column(self, crate: Crate) -> str:
        if not crate.active_source:
            return "—"
        label = CrateRelease.Source(crate.active_source).label
        return format_html('<span class="fx-pill fx-source-{}">{}</span>', crate.active_source, label)

    @admin.display(description="Docs", ordering="active_documents")
    def documents_column(self, crate: Crate) -> str:
        return _count(crate.active_documents)

    @admin.display(description="Chunks", ordering="active_chunks")
    def chunks_column(self, crate: Crate) -> str:
        return _count(crate.active_chunks)

    @admin.display(description="Embeddings", ordering="active_embeddings")
    def embeddings_column(self, crate: Crate) -> str:
        return _count(crate.active_embeddings)

    @admin.display(description="Last updated", ordering="active_ingested_at")
    def last_updated_column(self, crate: Crate) -> str:
        when = crate.active_ingested_at or crate.updated_at
        return format_html('<time datetime="{}" title="{}">{}</time>', when.isoformat(),
                           when.strftime("%Y-%m-%d %H:%M UTC"), format_age(when))

    @admin.display(description="Latest job", ordering="latest_job_status")
    def latest_job_column(self, crate: Crate) -> str:
        if not crate.latest_job_id:
            return "—"
        return format_html('<a href="{}">{}</a>', job_admin_url(crate.latest_job_id), status_badge_html(
            crate.latest_job_status, job_id=crate.latest_job_id))

    @admin.display(description="Deleted", boolean=True, ordering="deleted_at")
    def deleted_column(self, crate: Crate) -> bool:
        return crate.is_deleted

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # The stock bulk delete bypasses the removal job; ours asks for confirmation with counts.
        actions.pop("delete_selected", None)
        return actions

    # --- bulk actions -------------------------------------------------------------------------------
    @admin.action(description="Refresh selected crates (ingest the newest release)", permissions=["refresh"])
    def refresh_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, self._refresh, done="Refresh queued for {n} crate(s).")

    @admin.action(description="Soft delete selected crates (hide from search)", permissions=["soft_delete"])
    def soft_delete_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, self._soft_delete, done="Soft delete queued for {n} crate(s).")

    @admin.action(description="Restore selected soft-deleted crates", permissions=["restore"])
    def restore_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, self._restore, done="Restored {n} crate(s).")

    @admin.action(description="Hard delete selected crates…", permissions=["delete"])
    def hard_delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        crates = list(queryset)
        if request.POST.get("confirmed") == "yes":
            self._each(request, crates, self._hard_delete, done="Hard delete queued for {n} crate(s).")
            return None
        summaries = [portal_selectors.deletion_summary(crate=c) for c in crates]
        return self._render_delete_confirmation(request, summaries, bulk=True)

    def _each(self, request: HttpRequest, crates, write, *, done: str) -> None:
        self.apply_each(request, crates, write, label=lambda crate: crate.name, done=done, not_done="Not done")

    # --- the writes -----------------------------------------------------------------------------------
    def _refresh(self, request: HttpRequest, crate: Crate) -> EnqueueResult:
        result = enqueue_ingest(name=crate.name, version=None, force=False, requested_by=REQUESTED_BY_ADMIN)
        self.log_change(request, crate, f"Refresh queued (job {result.job.pk}).")
        logger.info("admin %s queued refresh of %s: job %s", request.user, crate.name, result.job.pk)
        return result

    def _soft_delete(self, request: HttpRequest, crate: Crate) -> EnqueueResult:
        # The removal job, as from the API and MCP: it cancels running ingests first, so an ingest that
        # activates its release afterwards cannot bring the crate back.
        result = enqueue_removal(name=crate.name, version=None, soft=True, requested_by=REQUESTED_BY_ADMIN)
        self.log_change(request, crate, f"Soft delete queued (job {result.job.pk}).")
        logger.info("admin %s queued soft delete of %s: job %s", request.user, crate.name, result.job.pk)
        return result

    def _restore(self, request: HttpRequest, crate: Crate) -> None:
        restore_crate(name=crate.name)
        self.log_change(request, crate, "Restored.")
        logger.info("admin %s restored %s", request.user, crate.name)

    def _hard_delete(self, request: HttpRequest, crate: Crate) -> EnqueueResult:
        result = enqueue_removal(name=crate.name, version=None, soft=False, requested_by=REQUESTED_BY_ADMIN)
        self.log_change(request, crate, f"Hard delete queued (job {result.job.pk}).")
        logger.info("admin %s queued hard delete of %s: job %s", request.user, crate.name, result.job.pk)
        return result

    # --- pages -----------------------------------------------------------------------------------------
    def get_urls(self):
        return [
            self.portal_path("<path:object_id>/refresh/", self.refresh_view, "refresh"),
            self.portal_path("<path:object_id>/soft-delete/", self.soft_delete_view, "soft_delete"),
            self.portal_path("<path:object_id>/restore/", self.restore_view, "restore"),
            *super().get_urls(),
        ]

    def _get_crate_or_404(self, request: HttpRequest, object_id: str, allowed=None) -> Crate:
        return self.get_viewable_object_or_404(request, object_id, missing="No such crate.", allowed=allowed)

    def _change_url(self, crate: Crate) -> str:
        return reverse("admin:crates_crate_change", args=[crate.pk])

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        # ?name= prefills the form: the search page links here for a crate its query names but nobody added.
        form = admin_forms.AddCrateForm(request.POST or None, initial={"name": request.GET.get("name", "")[:100]})
        if request.method == "POST" and form.is_valid():
            try:
                result = enqueue_ingest(
                    name=form.cleaned_data["name"], version=form.cleaned_data["version"],
                    force=form.cleaned_data["force"], requested_by=REQUESTED_BY_ADMIN,
                )
            except FerrodexError as exc:
                # The service validated the input: show its message at the field it names.
                field = exc.context.get("field")
                form.add_error(field if field in form.fields else None, str(exc))
            else:
                self.log_addition(request, result.job, f"Ingest queued from the admin for {result.job.crate_name}.")
                note = " (an identical job was already queued)" if result.deduplicated else ""
                self.message_user(request, f"Ingest of {result.job.crate_name} queued{note}.", messages.SUCCESS)
                return HttpResponseRedirect(job_admin_url(result.job))
        context = self.page_context(
            request, title="Add a crate", form=form, has_view_permission=self.has_view_permission(request)
        )
        return TemplateResponse(request, "portal/crate_add.html", context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        crate = self._get_crate_or_404(request, object_id)
        releases = list(crate.releases.order_by("-created_at")[:30])
        jobs = list(CrateJob.objects.filter(normalized_name=crate.normalized_name).order_by("-created_at")[:15])
        # Newest version first, as search and the API choose it (the releases are listed by creation).
        active = sorted(
            crate.releases.filter(state=CrateRelease.State.ACTIVE), key=lambda r: semver_key(r.version), reverse=True
        )
        context = self.page_context(
            request,
            title=crate.name,
            crate=crate,
            original=crate,
            releases=releases,
            active_release=active[0] if active else None,
            jobs=jobs,
            can_refresh=self.has_refresh_permission(request, crate),
            can_soft_delete=self.has_soft_delete_permission(request, crate),
            can_delete=self.has_delete_permission(request, crate),
            documents_url=reverse("admin:crates_document_changelist")
            + "?" + urlencode({"crate": crate.normalized_name}),
            search_url=reverse("admin:crates_document_search") + "?" + urlencode({"crate": crate.name}),
            docs_rs_url=_docs_rs_url(crate=crate, active=active[0] if active else None),
        )
        return TemplateResponse(request, "portal/crate_detail.html", context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context=None) -> HttpResponse:
        crate = self._get_crate_or_404(request, object_id, allowed=self.has_delete_permission)
        if request.method == "POST" and request.POST.get("confirmed") == "yes":
            return self.enqueue_and_redirect(
                request, lambda: self._hard_delete(request, crate),
                done=f"Hard delete of {crate.name} queued.", back=self._change_url(crate),
            )
        return self._render_delete_confirmation(request, [portal_selectors.deletion_summary(crate=crate)], bulk=False)

    def _render_delete_confirmation(self, request: HttpRequest, summaries, *, bulk: bool) -> TemplateResponse:
        context = self.page_context(
            request,
            title="Hard delete: are you sure?",
            summaries=summaries,
            bulk=bulk,
            totals={
                key: sum(getattr(s, key) for s in summaries)
                for key in ("releases", "documents", "chunks", "embeddings", "active_jobs")
            },
            selected_ids=[s.crate.pk for s in summaries],
            action_checkbox_name=admin.helpers.ACTION_CHECKBOX_NAME,
        )
        return TemplateResponse(request, "portal/crate_delete_confirm.html", context)

    @method_decorator(require_POST)
    def refresh_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        crate = self._get_crate_or_404(request, object_id, allowed=self.has_refresh_permission)
        return self.enqueue_and_redirect(
            request, lambda: self._refresh(request, crate),
            done=f"Refresh of {crate.name} queued.", back=self._change_url(crate),
        )

    @method_decorator(require_POST)
    def soft_delete_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        crate = self._get_crate_or_404(request, object_id, allowed=self.has_soft_delete_permission)
        return self.enqueue_and_redirect(
            request, lambda: self._soft_delete(request, crate),
            done=f"Soft delete of {crate.name} queued.", back=self._change_url(crate),
        )

    @method_decorator(require_POST)
    def restore_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._state_change(request, object_id, self._restore, done="{name} is restored.")

    def _state_change(self, request: HttpRequest, object_id: str, write, *, done: str) -> HttpResponse:
        crate = self._get_crate_or_404(request, object_id, allowed=self.has_soft_delete_permission)
        return self.write_and_redirect(
            request, lambda: write(request, crate), done=done.format(name=crate.name), back=self._change_url(crate)
        )


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


class ProjectPackageInline(admin.TabularInline):
    model = ProjectPackage
    fields = ["name", "version", "source", "direct", "dependency_kinds", "features", "default_features"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    """Projects are saved from a Cargo.lock (add_rust_crates_from_lockfile, POST /api/v1/lockfiles); here they are
    listed, inspected and removed (their crates' documentation stays)."""

    list_display = ["name", "packages_column", "direct_only", "has_manifest", "lockfile_version", "updated_at"]
    search_fields = ["name"]
    readonly_fields = ["name", "lockfile_version", "direct_only", "has_manifest", "created_at", "updated_at"]
    inlines = [ProjectPackageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(package_count=Count("packages"))

    @admin.display(description="Packages", ordering="package_count")
    def packages_column(self, project: Project) -> int:
        return project.package_count

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(CrateRelease)
class CrateReleaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Releases are written by ingest jobs only."""

    list_display = ["crate", "version", "state", "docs_source", "format_version", "document_count", "chunk_count",
                    "embedding_count", "embedding_model", "ingested_at"]
    list_filter = ["state", "docs_source", "embedding_model"]
    search_fields = ["crate__name", "version"]
    list_select_related = ["crate"]


# --- documents and the search page ---------------------------------------------------------------
class DocumentCrateFilter(admin.SimpleListFilter):
    title = "crate"
    parameter_name = "crate"

    def lookups(self, request, model_admin):
        return list(Crate.objects.order_by("normalized_name").values_list("normalized_name", "name")[:500])

    def queryset(self, request, queryset):
        if self.value():
            # Any spelling of the name, as the Crates search takes it ('serde-json' is serde_json).
            return queryset.filter(release__crate__normalized_name=normalize_crate_name(self.value()))
        return queryset


class ReleaseStateFilter(admin.SimpleListFilter):
    """Only the active releases unless asked: that is what search and agents see."""

    title = "release"
    parameter_name = "release_state"

    def lookups(self, request, model_admin):
        return [("all", "All releases"), *[(s.value, s.label) for s in CrateRelease.State if s.value != "active"]]

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "Active (what search sees)",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset.filter(release__state=CrateRelease.State.ACTIVE)
        if self.value() == "all":
            return queryset
        if self.value() not in CrateRelease.State.values:
            return queryset.none()
        return queryset.filter(release__state=self.value())


@admin.register(Document)
class DocumentAdmin(PortalAdminMixin, ReadOnlyAdminMixin, TitledChangeListMixin, admin.ModelAdmin):
    """Documents are derived from rustdoc output; fix them by re-ingesting, not by hand."""

    list_display = ["path", "kind_column", "crate_column", "version_column", "deprecated"]
    list_filter = [DocumentCrateFilter, "kind", ReleaseStateFilter, "deprecated"]
    search_fields = ["path", "name"]
    search_help_text = "Part of an item path, e.g. Mutex or sync::Mutex."
    list_select_related = ["release__crate"]
    list_per_page = 50
    show_full_result_count = False

    @admin.display(description="Kind", ordering="kind")
    def kind_column(self, doc: Document) -> str:
        return format_html('<span class="fx-kind fx-kind-{}">{}</span>', doc.kind, doc.get_kind_display())

    @admin.display(description="Crate", ordering="release__crate__normalized_name")
    def crate_column(self, doc: Document) -> str:
        return doc.release.crate.name

    @admin.display(description="Version", ordering="release__version")
    def version_column(self, doc: Document) -> str:
        return doc.release.version

    def get_urls(self):
        return [self.portal_path("search/", self.search_view, "search"), *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        doc = self.get_viewable_object_or_404(request, object_id, missing="No such document.")
        children = Document.objects.filter(release=doc.release, parent_path=doc.path).order_by("kind", "path")
        parent = Document.objects.filter(release=doc.release, path=doc.parent_path).first() if doc.parent_path else None
        context = self.page_context(
            request,
            title=doc.path,
            doc=doc,
            original=doc,
            crate=doc.release.crate,
            release=doc.release,
            parent=parent,
            children=list(children[:200]),
            chunks=list(doc.chunks.order_by("ordinal").only("ordinal", "token_count", "text")[:50]),
        )
        return TemplateResponse(request, "portal/document_detail.html", context)

    def search_view(self, request: HttpRequest) -> HttpResponse:
        """The same hybrid search agents get, with the signals that matched each hit."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = admin_forms.SearchForm(admin_forms.search_form_data(request.GET) if request.GET else None)
        hits, error, doc_ids, missing, item = None, "", {}, {"notice": "", "missing_crates": []}, None
        if form.is_bound and form.is_valid():
            data = form.cleaned_data
            try:
                hits = selectors.search_docs(
                    query=data["q"], crate=data["crate"] or None, version=data["version"] or None,
                    kinds=data["kinds"] or None, limit=data["limit"] or 10,
                    signals=tuple(data["signals"]) or admin_forms.SEARCH_SIGNALS,
                )
                doc_ids = portal_selectors.document_ids_for_hits(hits)
                missing = search_notice(query=data["q"])
                item = portal_selectors.item_for_query(query=data["q"], crate=data["crate"], version=data["version"])
            except FerrodexError as exc:
                # The search validated the input: a bad version is shown at its field, as the API names it.
                if exc.context.get("field") == "version":
                    form.add_error("version", str(exc))
                else:
                    error = str(exc)
                if isinstance(exc, CrateNotFound) and exc.context.get("crate") and not exc.context.get("deleted"):
                    missing["missing_crates"] = [exc.context["crate"]]  # the page links to adding it
        results = [
            {"hit": hit, "doc_id": doc_ids.get((hit.crate.lower().replace("-", "_"), hit.version, hit.path, hit.kind))}
            for hit in hits or []
        ]
        context = self.page_context(
            request,
            title="Search documentation",
            form=form,
            results=results,
            searched=hits is not None,
            error=error,
            notice=missing["notice"],
            item=item,
            missing_crates=missing["missing_crates"],
            signals=admin_forms.SEARCH_SIGNALS,
        )
        return TemplateResponse(request, "portal/search.html", context)


@admin.register(Chunk)
class ChunkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["document", "ordinal", "token_count", "has_embedding"]
    search_fields = ["document__path"]
    raw_id_fields = ["document", "release"]
    exclude = ["embedding", "search_vector"]
    list_select_related = ["document"]
    show_full_result_count = False

    @admin.display(description="Embedded", boolean=True)
    def has_embedding(self, chunk: Chunk) -> bool:
        return chunk.embedding is not None


# --- API keys -------------------------------------------------------------------------------------
@admin.register(ApiKey)
class ApiKeyAdmin(PortalAdminMixin, TitledChangeListMixin, admin.ModelAdmin):
    changelist_title = "API keys"
    list_display = ["name", "prefix_column", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "prefix"]
    fields = ["name", "is_active", "prefix", "created_at", "last_used_at"]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    actions = ["revoke_selected"]

    @admin.display(description="Key", ordering="prefix")
    def prefix_column(self, key: ApiKey) -> str:
        return format_html("<code>{}…</code>", key.prefix)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = 0
        for key in queryset.filter(is_active=True):
            revoke_api_key(key_id=key.pk)
            self.log_change(request, key, "Revoked.")
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context=None) -> HttpResponse:
        """Create a key and show its plaintext once; it is stored only as a hash."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = admin_forms.ApiKeyCreateForm(request.POST or None)
        context = self.page_context(
            request, title="Create an API key", form=form, has_view_permission=self.has_view_permission(request)
        )
        if request.method == "POST" and form.is_valid():
            try:
                key, plaintext = create_api_key(name=form.cleaned_data["name"])
            except FerrodexError as exc:
                form.add_error("name", str(exc))
            else:
                self.log_addition(request, key, "Created from the admin.")
                # admin_view's never_cache marks this response no-store: the key must not sit in a cache.
                return TemplateResponse(
                    request, "portal/apikey_created.html",
                    {**context, "title": "API key created", "key": key, "plaintext": plaintext},
                )
        return TemplateResponse(request, "portal/apikey_add.html", context)


def _docs_rs_url(*, crate: Crate, active: CrateRelease | None) -> str:
    """The crate's page on docs.rs; none for docs ingested from local files (a private crate has none).

    A release fetched from docs.rs always records its download's digest; a local ingest has no download.
    """
    if active is None or not active.artifact_sha256:
        return ""
    return f"{settings.DOCSRS_BASE_URL}/crate/{crate.name}/{active.version}"
