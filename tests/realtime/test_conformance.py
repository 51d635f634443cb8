"""The production server speaks WebSocket by the book: the Autobahn cases (`kosoku`) against a live echo route.

Cases 9.* (performance) and 12.*/13.* (compression, off by default) are left out; tests/realtime/
test_deflate.py runs compression cases with WEBSOCKET_DEFLATE on.
The echo route exists only in test settings (tests/echo.py); the server is the one `manage.py serve`
starts by default, so this follows the production choice.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LiveServer

KOSOKU = shutil.which("kosoku") or str(Path(sys.executable).with_name("kosoku"))


@pytest.mark.timeout(600)
def test_the_server_passes_the_autobahn_cases(live_server_factory: Callable[..., LiveServer], tmp_path: Path) -> None:
    if not Path(KOSOKU).exists():
        pytest.fail("kosoku is not installed (requirements-dev.txt)")
    # The suite's 64 KiB messages come without credentials: lift the anonymous-socket cap (4x this) above them.
    server = live_server_factory(REALTIME_ANONYMOUS_MAX_FRAME_BYTES="32768")
    run = subprocess.run(
        [KOSOKU, "-x", "9.*", "-x", "12.*", "-x", "13.*", "-p", "4", "-o", str(tmp_path), f"127.0.0.1:{server.port}"],
        capture_output=True,
        text=True,
        timeout=540,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    reports = list(tmp_path.glob("*_case_*.json"))
    assert len(reports) == 247, len(reports)
