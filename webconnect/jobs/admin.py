from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from webconnect.jobs.models import JobRun, RetentionPolicy
from webconnect.jobs.registry import JOBS
from webconnect.jobs.tasks import run_job


def _prune_job_for(policy: RetentionPolicy) -> str | None:
    return next((job.name for job in JOBS.values() if job.kind == policy.kind), None)


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(admin.ModelAdmin[RetentionPolicy]):
    list_display = ["kind", "max_age_days", "max_count", "enabled", "legal_hold", "prune_job", "updated_at"]
    list_editable = ["max_age_days", "max_count", "enabled", "legal_hold"]
    list_filter = ["enabled", "legal_hold"]
    actions = ["dry_run_now", "run_now"]

    @admin.display(description="job")
    def prune_job(self, policy: RetentionPolicy) -> str:
        # Every kind has a job (tests/jobs check it); this shows only if an app failed to load.
        return _prune_job_for(policy) or "NO JOB: this policy is not enforced"

    def _enqueue(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy], *, dry_run: bool) -> None:
        for policy in queryset:
            job = _prune_job_for(policy)
            if job is None:
                self.message_user(request, f"No job prunes {policy} yet.", level=messages.WARNING)
                continue
            run_job.delay(job, dry_run=dry_run)
            self.message_user(
                request, f"Queued {'a dry run of ' if dry_run else ''}{job}; see Job runs for the result."
            )

    @admin.action(description="Dry-run the prune job now (deletes nothing)")
    def dry_run_now(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        self._enqueue(request, queryset, dry_run=True)

    @admin.action(description="Run the prune job now")
    def run_now(self, request: HttpRequest, queryset: QuerySet[RetentionPolicy]) -> None:
        self._enqueue(request, queryset, dry_run=False)


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin[JobRun]):
    list_display = ["job", "status", "dry_run", "started_at", "finished_at", "items_affected", "items_failed"]
    list_filter = ["status", "job", "dry_run"]
    date_hierarchy = "started_at"
    readonly_fields = [field.name for field in JobRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: JobRun | None = None) -> bool:
        return False
