"""Shared fixtures: named actors, tiers, live Daphne servers and a real Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
SERVICES_CONFIGURED = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
REQUIRE_SERVICES = os.environ.get("WEBCONNECT_REQUIRE_SERVICES", "").lower() in {"1", "true", "yes"}
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# --- Tiers ----------------------------------------------------------------------


def pytest_report_header(config: pytest.Config) -> str:
    if SERVICES_CONFIGURED:
        return f"services tier: ON (database {settings.DATABASES['default']['ENGINE']}, redis {settings.REDIS_URL})"
    return (
        "services tier: OFF — DATABASE_URL and REDIS_URL are not both set; "
        "tests marked 'services' will be SKIPPED"
        + (" and FAIL (WEBCONNECT_REQUIRE_SERVICES)" if REQUIRE_SERVICES else "")
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Playwright's sync API keeps an event loop running in the main thread for
    # the whole browser session; async tests cannot start their own loop while
    # it lives, so browser tests run last, together.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
    # A transactional test ends by flushing every table, and with it the rows data
    # migrations installed (default policies, namespaces, retention policies,
    # schedules). Every transactional test therefore restores the migrated state
    # (serialized rollback): all of them or none, because mixing the two recreates
    # content types under new ids and the next restore collides with them.
    from pytest_django.fixtures import validate_django_db

    # Tests that coordinate with separate server processes (live Daphne, Chromium)
    # depend on timing across processes on two shared cores; a rare miss is re-run
    # (shown as R in the report) up to twice rather than failing the run.
    live = {"live_daphne", "live_server_factory", "page"}
    for item in items:
        if live & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.flaky(reruns=2, reruns_delay=1))

    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None:
            continue
        transaction, reset_sequences, databases, serialized_rollback, available_apps = validate_django_db(marker)
        if transaction and not serialized_rollback:
            item.add_marker(
                pytest.mark.django_db(
                    transaction=True,
                    reset_sequences=reset_sequences,
                    databases=databases,
                    serialized_rollback=True,
                    available_apps=available_apps,
                ),
                append=False,
            )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("services") and not SERVICES_CONFIGURED:
        message = "services tier needs DATABASE_URL and REDIS_URL (PostgreSQL and Redis)"
        if REQUIRE_SERVICES:
            pytest.fail(
                f"{message}, and WEBCONNECT_REQUIRE_SERVICES is set: a skipped services test fails", pytrace=False
            )
        pytest.skip(message)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    # A services test that skips for any reason (importorskip, a fixture) would let
    # CI pass without the tier having run: under WEBCONNECT_REQUIRE_SERVICES it fails.
    if REQUIRE_SERVICES and report.skipped and item.get_closest_marker("services"):
        report.outcome = "failed"
        report.longrepr = f"services test skipped under WEBCONNECT_REQUIRE_SERVICES: {report.longrepr}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not SERVICES_CONFIGURED and any(item.get_closest_marker("services") for item in session.items):
        sys.stderr.write(
            "\n" + "!" * 78 + "\n!! SERVICES TIER SKIPPED: set DATABASE_URL and REDIS_URL to run it\n" + "!" * 78 + "\n"
        )
    data_dir = os.environ.get("WEBCONNECT_DATA_DIR", "")
    if "webconnect-tests-" in data_dir:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> None:
    """Each test starts with its own sign-in counters (in-memory storage is per process)."""
    from webconnect import throttling

    throttling._limiter.cache_clear()
    throttling._limit.cache_clear()


@pytest.fixture(autouse=True)
def _fresh_policy_caches(request: pytest.FixtureRequest) -> None:
    """Each test reads the policy set of its own database (a rolled-back test leaves
    this process's cache holding policies that no longer exist), and has the default
    policy set: a transactional test flushes every table, data-migration rows included."""
    from policies import engine, ratelimit, watch

    engine.clear_caches()
    ratelimit.reset()
    watch.reset()  # rolled-back tests reuse policy version numbers
    from policies.connlimits import limiter

    limiter.reset()
    if request.node.get_closest_marker("django_db"):
        request.getfixturevalue("_django_db_helper")
        from policies.models import AccessPolicy

        if not AccessPolicy.objects.exists():
            import importlib

            from django.apps import apps

            importlib.import_module("policies.migrations.0002_default_policies").install(apps, None)


# --- Actors -------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def make_user(django_user_model: Any) -> Callable[..., Any]:
    def make(username: str, *, staff: bool = False, superuser: bool = False, password: str = PASSWORD) -> Any:
        if superuser:
            return django_user_model.objects.create_superuser(
                username=username, password=password, email=f"{username}@example.com"
            )
        return django_user_model.objects.create_user(
            username=username, password=password, is_staff=staff, email=f"{username}@example.com"
        )

    return make


@pytest.fixture
def alice(make_user: Callable[..., Any]) -> Any:
    """An ordinary signed-up user."""
    return make_user("alice")


@pytest.fixture
def bob(make_user: Callable[..., Any]) -> Any:
    return make_user("bob")


@pytest.fixture
def admin_user(make_user: Callable[..., Any]) -> Any:
    """A superuser (staff)."""
    return make_user("root", superuser=True)


@pytest.fixture
def mint_token() -> Callable[..., str]:
    """`createtoken` exactly as a script would call it."""
    from io import StringIO

    from django.core.management import call_command

    def mint(username: str, scopes: str, expires: int = 3600) -> str:
        out = StringIO()
        call_command("createtoken", username, scopes=scopes, expires=expires, stdout=out)
        return out.getvalue().strip()

    return mint


# --- Live servers ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(database_name: str, *, extra_env: dict[str, str] | None = None, timeout: float = 30) -> LiveServer:
    """A real Daphne process on the test database; it stops when the fixture ends."""
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"daphne-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "WEBCONNECT_TEST_DATABASE_NAME": database_name,
        **(extra_env or {}),
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # servers must keep Django's async-safety checks
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = LiveServer(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not start within {timeout}s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def live_server_factory(django_db_setup: Any, django_db_blocker: Any) -> Iterator[Callable[..., LiveServer]]:
    from django.db import connection

    servers: list[LiveServer] = []
    with django_db_blocker.unblock():
        database_name = str(connection.settings_dict["NAME"])

    def factory(**extra_env: str) -> LiveServer:
        server = start_server(database_name, extra_env=extra_env)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def live_daphne(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    """One shared Daphne process serving the test database (use with transactional_db)."""
    return live_server_factory()


@dataclass
class CeleryWorkers:
    """Real Celery worker processes on the test database, each consuming one private queue."""

    database_name: str
    queue: str = field(default_factory=lambda: f"test-{os.environ['WEBCONNECT_TEST_RUN']}-{time.monotonic_ns()}")
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "WEBCONNECT_TEST_DATABASE_NAME": self.database_name,
            **extra_env,
        }
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / f"worker-{self.queue}-{len(self.processes)}.log").open("wb") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "webconnect",
                    "worker",
                    "-Q",
                    self.queue,
                    "--pool",
                    "solo",
                    "--without-heartbeat",
                    "--without-gossip",
                    "--without-mingle",
                    "-l",
                    "INFO",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(worker)
        return worker

    def stop(self) -> None:
        for worker in self.processes:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    worker.kill()
                    worker.wait(timeout=5)


@pytest.fixture
def celery_workers(transactional_db: Any) -> Iterator[CeleryWorkers]:
    """Start workers with `.start(**env)`; send them tasks with `queue=celery_workers.queue`."""
    from django.db import connection

    workers = CeleryWorkers(str(connection.settings_dict["NAME"]))
    yield workers
    workers.stop()


# --- Browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium package (see .ci/run)")
    # Playwright's sync API runs an event loop in this thread; the test's own ORM
    # calls are still sequential, so Django's async-context guard is lifted here only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_page(chromium: Any, live_daphne: LiveServer) -> Iterator[Callable[[str], Any]]:
    """Pages signed in as a named user on `live_daphne` (a module may give each test its own server)."""
    contexts: list[Any] = []

    def open_as(username: str) -> Any:
        # bypass_csp: Playwright's wait_for_function evaluates strings, which the CSP forbids
        # (rightly, for pages); tests/browser/test_csp_browser.py checks the pages under the CSP.
        context = chromium.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=True)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_daphne.url}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{live_daphne.url}/")
        return page

    yield open_as
    for context in contexts:
        context.close()


def signed_in_session(server: LiveServer, username: str, path: str = "/accounts/login/") -> Any:
    """A `requests` session signed in through a real login form (`/accounts/login/` or `/admin/login/`)."""
    import re

    import requests

    session = requests.Session()
    page = session.get(f"{server.url}{path}", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf is not None, page.text[:300]
    response = session.post(
        f"{server.url}{path}",
        data={"csrfmiddlewaretoken": csrf.group(1), "username": username, "password": PASSWORD},
        headers={"Referer": f"{server.url}{path}"},
        timeout=10,
    )
    assert response.ok and "sessionid" in session.cookies, response.text[:300]
    return session


@pytest.fixture
def page(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = chromium.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)  # see open_page
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


@pytest.fixture
def no_policy_tests(db: None) -> None:
    """No policy test cases: for tests that save a policy breaking the shipped ones on purpose
    (a save is refused while a case fails; tests/policies/test_policytests.py covers that)."""
    from policies.models import PolicyTestCase

    PolicyTestCase.objects.all().delete()
