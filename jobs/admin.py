from django.contrib import admin

from jobs.models import CrateJob, JobEvent


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    readonly_fields = ["event_type", "message", "data", "created_at"]
    can_delete = False


@admin.register(CrateJob)
class CrateJobAdmin(admin.ModelAdmin):
    list_display = ["id", "crate_name", "requested_version", "operation", "status", "progress", "stage_message",
                    "requested_by", "created_at"]
    list_filter = ["status", "operation", "requested_by"]
    search_fields = ["crate_name", "id"]
    inlines = [JobEventInline]


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ["job", "event_type", "message", "created_at"]
    list_filter = ["event_type"]
    raw_id_fields = ["job"]
