from django.contrib import admin

from crates.models import ApiKey, Chunk, Crate, CrateRelease, Document


@admin.register(Crate)
class CrateAdmin(admin.ModelAdmin):
    list_display = ["name", "latest_version", "deleted_at", "updated_at"]
    list_filter = [("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "normalized_name", "description"]


@admin.register(CrateRelease)
class CrateReleaseAdmin(admin.ModelAdmin):
    list_display = ["crate", "version", "state", "docs_source", "document_count", "chunk_count", "ingested_at"]
    list_filter = ["state", "docs_source"]
    search_fields = ["crate__name", "version"]
    list_select_related = ["crate"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ["path", "kind", "release", "deprecated"]
    list_filter = ["kind", "deprecated"]
    search_fields = ["path"]
    list_select_related = ["release__crate"]
    raw_id_fields = ["release"]


@admin.register(Chunk)
class ChunkAdmin(admin.ModelAdmin):
    list_display = ["document", "ordinal", "token_count"]
    search_fields = ["document__path"]
    raw_id_fields = ["document", "release"]
    exclude = ["embedding"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
