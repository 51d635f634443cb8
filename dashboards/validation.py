"""Checks on widget configuration shared by the model, the admin and the API."""

from __future__ import annotations

from typing import Any

from dashboards import paths
from webconnect.realtime.protocol import valid_channel

KINDS = ("line", "gauge", "stat", "bar", "table", "log")
# Kinds that draw numbers need at least one value path; a log shows whole messages.
NUMERIC_KINDS = ("line", "gauge", "stat", "bar")
MAX_SERIES = 8
OPTION_KEYS = {"unit", "decimals", "min", "max", "thresholds", "colors", "window", "rows", "key"}


def channel_problem(channel: object) -> str:

    if not valid_channel(channel):
        return "invalid channel name: namespace.name, letters, digits and ._-: only"
    return ""


def widget_problems(*, kind: str, channel: object, value_paths: object, options: object) -> dict[str, str]:
    problems: dict[str, str] = {}
    if kind not in KINDS:
        problems["kind"] = f"kind must be one of {', '.join(KINDS)}"
    if problem := channel_problem(channel):
        problems["channel"] = problem
    if not isinstance(value_paths, list) or not all(paths.valid_path(p) for p in value_paths):
        problems["value_paths"] = "value_paths is a list of dotted paths such as temp or cpu.load"
    elif len(value_paths) > MAX_SERIES:
        problems["value_paths"] = f"at most {MAX_SERIES} series per widget"
    elif kind in NUMERIC_KINDS and not value_paths:
        problems["value_paths"] = f"a {kind} widget needs at least one value path"
    elif kind in ("gauge", "stat") and len(value_paths) != 1:
        problems["value_paths"] = f"a {kind} widget shows exactly one value path"
    if not isinstance(options, dict):
        problems["options"] = "options must be an object"
    else:
        if unknown := set(options) - OPTION_KEYS:
            problems["options"] = f"unknown options: {', '.join(sorted(unknown))}"
        elif problem := _options_problem(options):
            problems["options"] = problem
    return problems


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _options_problem(options: dict[str, Any]) -> str:
    window = options.get("window", 300)
    if not isinstance(window, int) or isinstance(window, bool) or not 10 <= window <= 31 * 86400:
        return "window is a number of seconds from 10 to 2678400"
    decimals = options.get("decimals", 0)
    if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 10:
        return "decimals is a whole number from 0 to 10"
    for key in ("min", "max"):
        if key in options and not _is_number(options[key]):
            return f"{key} must be a number"
    rows = options.get("rows", 20)
    if not isinstance(rows, int) or isinstance(rows, bool) or not 1 <= rows <= 200:
        return "rows must be 1..200"
    thresholds = options.get("thresholds", [])
    if not isinstance(thresholds, list) or not all(
        isinstance(t, list) and len(t) == 2 and _is_number(t[0]) and isinstance(t[1], str) for t in thresholds
    ):
        return "thresholds is a list of [value, colour] pairs"
    colors = options.get("colors", [])
    if not isinstance(colors, list) or not all(isinstance(c, str) and len(c) <= 32 for c in colors):
        return "colors is a list of CSS colours"
    if "key" in options and (not isinstance(options["key"], str) or not paths.valid_path(options["key"])):
        return "key is a value path (a table keeps one row per value found there)"
    if "unit" in options and (not isinstance(options["unit"], str) or len(options["unit"]) > 16):
        return "unit is a short string"
    return ""
