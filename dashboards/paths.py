"""Value paths: where a number sits inside a channel message's payload.

A path is dot-separated keys and list indexes: "temp", "cpu.load", "readings.0.value".
"" means the payload itself (a channel publishing bare numbers).
"""

from __future__ import annotations

import math
import re
from typing import Any

PATH_MAX_LENGTH = 128
PATH_RE = re.compile(r"^([A-Za-z0-9_:-]{1,64})(\.[A-Za-z0-9_:-]{1,64})*$")
_MISSING = object()


class PathError(Exception):
    """A value path that matches nothing, or a value that is not a number."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # "no_match", "not_numeric" or "null" (no value now)
        self.message = message


def valid_path(path: object) -> bool:
    return isinstance(path, str) and (path == "" or (len(path) <= PATH_MAX_LENGTH and bool(PATH_RE.match(path))))


def lookup(payload: Any, path: str) -> Any:
    """The value at `path`, or raise PathError("no_match")."""
    if path == "":
        return payload
    current = payload
    for key in path.split("."):
        if isinstance(current, dict):
            current = current.get(key, _MISSING)
        elif isinstance(current, list) and key.isdigit() and int(key) < len(current):
            current = current[int(key)]
        else:
            current = _MISSING
        if current is _MISSING:
            raise PathError("no_match", f"value path {path!r} matches nothing in the payload")
    return current


def number_at(payload: Any, path: str) -> float:
    """The finite number at `path`, or raise PathError saying what is wrong."""
    value = lookup(payload, path)
    if value is None:
        raise PathError("null", f"value at {path or 'the payload'!r} is null")
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = repr(value)[:40]
        raise PathError("not_numeric", f"value at {path or 'the payload'!r} is not a number: {shown}")
    number = float(value)
    if not math.isfinite(number):
        raise PathError("not_numeric", f"value at {path!r} is not a finite number")
    return number
