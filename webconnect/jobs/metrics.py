"""Job health for Prometheus, read from the JobRun table at scrape time.

Jobs run in Celery workers, not in the web processes that serve /metrics, so
the figures come from the database every process shares.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Max
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from webconnect.jobs.models import JobRun
from webconnect.jobs.registry import JOBS
from webconnect.jobs.services import consecutive_failures


class JobsCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names; answering from here keeps app start-up off the database.
        return self._families()

    def _families(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("webconnect_job_last_success_timestamp_seconds", "", labels=["job"])
        yield GaugeMetricFamily("webconnect_job_consecutive_failures", "", labels=["job"])
        yield GaugeMetricFamily("webconnect_audit_chain_ok", "")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last_success = GaugeMetricFamily(
            "webconnect_job_last_success_timestamp_seconds", "When each job last succeeded (Unix time)", labels=["job"]
        )
        failing = GaugeMetricFamily(
            "webconnect_job_consecutive_failures",
            "Failed or lost runs in a row, per job (alert when >= 3)",
            labels=["job"],
        )
        chain = GaugeMetricFamily(
            "webconnect_audit_chain_ok", "1 if the last audit chain verification passed, 0 if it found a break"
        )
        successes = dict(
            JobRun.objects.filter(status=JobRun.Status.SUCCEEDED)
            .values("job")
            .annotate(last=Max("finished_at"))
            .values_list("job", "last")
        )
        for name in JOBS:
            if successes.get(name):
                last_success.add_metric([name], successes[name].timestamp())
            failing.add_metric([name], consecutive_failures(name))
        # A lost verification verified nothing: the gauge keeps the last one that finished
        # (the lost run counts in webconnect_job_consecutive_failures instead).
        last_verify = (
            JobRun.objects.filter(job="verify_audit")
            .exclude(status__in=[JobRun.Status.RUNNING, JobRun.Status.LOST])
            .first()
        )
        if last_verify is not None:
            chain.add_metric([], 1.0 if last_verify.status == JobRun.Status.SUCCEEDED else 0.0)
        yield from (last_success, failing, chain)


jobs_collector = JobsCollector()
REGISTRY.register(jobs_collector)
