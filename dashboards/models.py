"""Dashboards, their widgets, and the numeric series points that feed them."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from dashboards import paths
from dashboards.layout import layout_problem
from dashboards.validation import widget_problems


class Dashboard(models.Model):
    class Visibility(models.TextChoices):
        PRIVATE = "private", "Private (owner and staff)"
        SHARED = "shared", "Shared (signed-in users with a share policy)"
        PUBLIC = "public", "Public (every signed-in user)"

    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dashboards")
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PRIVATE)
    # [{"id": <widget id>, "x": 0..11, "y", "w": 1..12, "h": 1..6}, ...] in reading
    # order (dashboards/layout.py); widgets not listed are placed after the others.
    layout = models.JSONField(default=list, blank=True)
    system = models.CharField(
        max_length=32, blank=True, default="", help_text="Set for built-in dashboards (demo, ops) created by code."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "id"]

    def __str__(self) -> str:
        return self.title

    def clean(self) -> None:
        problem = layout_problem(self.layout)
        if problem:
            raise ValidationError({"layout": problem})


class Widget(models.Model):
    class Kind(models.TextChoices):
        LINE = "line", "Line chart"
        GAUGE = "gauge", "Gauge"
        STAT = "stat", "Single stat"
        BAR = "bar", "Bar chart"
        TABLE = "table", "Table of latest rows"
        LOG = "log", "Event log"

    dashboard = models.ForeignKey(Dashboard, on_delete=models.CASCADE, related_name="widgets")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LINE)
    title = models.CharField(max_length=200)
    channel = models.CharField(max_length=128, help_text="Source channel, e.g. demo.sensors")
    # One path per series, dotted into the payload ("cpu.load", "readings.0.value").
    value_paths = models.JSONField(default=list, blank=True)
    # unit, decimals, min, max, thresholds [[value, colour], ...], colors [..], window (seconds), rows
    options = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.title} ({self.kind})"

    @property
    def window_seconds(self) -> int:
        window = self.options.get("window", 300) if isinstance(self.options, dict) else 300
        return int(window) if isinstance(window, int) and 10 <= window <= 31 * 86400 else 300

    def clean(self) -> None:

        problems = widget_problems(
            kind=self.kind, channel=self.channel, value_paths=self.value_paths, options=self.options
        )
        if problems:
            raise ValidationError(problems)


class SeriesPoint(models.Model):
    """One numeric value of one series (channel + value path) at one instant.

    `ts` is milliseconds since the epoch as an integer so that bucketing for
    downsampling is integer division, the same SQL on PostgreSQL and SQLite.
    """

    id = models.BigAutoField(primary_key=True)
    channel = models.CharField(max_length=128)
    path = models.CharField(max_length=paths.PATH_MAX_LENGTH)
    ts = models.BigIntegerField()
    value = models.FloatField()

    class Meta:
        indexes = [
            models.Index(fields=["channel", "path", "ts"], name="dash_point_series_ts"),
            # Retention deletes by time across all series.
            models.Index(fields=["ts"], name="dash_point_ts"),
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.path}@{self.ts}={self.value}"
