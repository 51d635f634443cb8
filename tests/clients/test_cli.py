"""The CLI (`python -m webconnect_client`) as a user runs it, as a real process against a live server:
exit codes (0 ok, 1 refused, 2 usage, 3 connection), one line on stderr for every refusal, and a
subscription the server ends makes it exit instead of hanging."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.conftest import PASSWORD, ROOT, LiveServer, free_port

pytestmark = pytest.mark.django_db(transaction=True)

SCOPES = "realtime:read realtime:write"
FORBID_CHAT = 'forbid(principal, action, resource is Channel)\nwhen { resource.namespace == "chat" };'


def _env() -> dict[str, str]:
    # What the user typed is all the CLI gets: no token or URL from the test's own environment.
    env = {k: v for k, v in os.environ.items() if k not in {"WEBCONNECT_TOKEN", "WEBCONNECT_URL"}}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _command(url: str | None, token: str | None, args: tuple[str, ...]) -> list[str]:
    command = [sys.executable, "-m", "webconnect_client"]
    if url is not None:
        command += ["--url", url]
    if token is not None:
        command += ["--token", token]
    return [*command, *args]


def cli(
    *args: str, url: str | None = None, token: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command(url, token, args), capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=_env(), check=False
    )


@contextlib.contextmanager
def background_cli(*args: str, url: str, token: str | None = None) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        _command(url, token, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=_env(),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def finish(process: subprocess.Popen[str], within: float) -> tuple[int, str, str]:
    """The process's exit code, stdout and stderr; fails if it does not exit by itself in time."""
    try:
        stdout, stderr = process.communicate(timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=10)
        raise AssertionError(f"the CLI did not exit within {within}s (it hangs); stderr: {stderr[-2000:]}") from None
    return process.returncode, stdout, stderr


def wait_present(server: LiveServer, token: str, channel: str, name: str, process: subprocess.Popen[str]) -> None:
    """Until `name` is in the channel's presence (the subscriber's subscribe was acknowledged)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the subscriber exited early: {process.communicate()}"
        response = requests.get(
            f"{server.url}/api/channels/{channel}/presence/", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        if response.ok and name in response.text:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} never appeared in {channel}")


def publish(server: LiveServer, token: str, channel: str, payload: str) -> None:
    response = requests.post(
        f"{server.url}/api/channels/{channel}/publish/",
        data=payload,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 201, response.text


def one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- Without a server -------------------------------------------------------------------------


def test_help_documents_the_exit_codes() -> None:
    shown = cli("--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "exit codes:" in text
    for line in ("0 done", "1 refused: invalid or expired token", "2 usage: bad arguments", "3 connection: cannot"):
        assert line in text, text


def test_bad_arguments_are_a_usage_error() -> None:
    not_json = cli("publish", "chat.lobby", "{not json")
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr and "Traceback" not in not_json.stderr
    bad_since = cli("subscribe", "chat.lobby", "--since", "yesterday")
    assert bad_since.returncode == 2 and "OFFSET:EPOCH" in bad_since.stderr
    no_command = cli()
    assert no_command.returncode == 2


def test_nothing_listening_is_a_connection_error() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws/"
    result = cli("publish", "chat.lobby", "1", url=url, token="whatever")
    assert result.returncode == 3
    assert one_line(result.stderr).startswith(f"cannot connect to {url}: ")


# --- Refusals against the live server ---------------------------------------------------------


def test_a_bad_token_is_refused_in_one_line(live_daphne: LiveServer) -> None:
    # Tokens are URL-safe base64: one may begin with "-" and is still a token, not an option.
    for token in ("not-a-token", "-starts-with-a-dash"):
        for command in (("publish", "chat.lobby", "1"), ("subscribe", "chat.lobby")):
            result = cli(*command, url=f"{live_daphne.ws_url}/ws/", token=token)
            assert result.returncode == 1, result
            assert one_line(result.stderr) == "refused: invalid or expired token (HTTP 403)"


def test_an_expired_token_is_refused_in_one_line(
    live_daphne: LiveServer, alice: Any, mint_token: Callable[..., str]
) -> None:
    from django.utils import timezone
    from oauth2_provider.models import AccessToken

    token = mint_token("alice", SCOPES)
    AccessToken.objects.filter(user=alice).update(expires=timezone.now())
    result = cli("history", "chat.lobby", url=f"{live_daphne.ws_url}/ws/", token=token)
    assert result.returncode == 1
    assert one_line(result.stderr) == "refused: invalid or expired token (HTTP 403)"


def test_without_a_token_it_says_a_token_is_needed(live_daphne: LiveServer) -> None:
    result = cli("publish", "chat.lobby", '{"text": "hi"}', url=f"{live_daphne.ws_url}/ws/")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("refused: a token is needed: pass --token or set WEBCONNECT_TOKEN"), line
    assert "createtoken" in line and line.endswith("(HTTP 403)")


def test_without_a_token_where_anonymous_reading_is_on_publishing_says_a_token_is_needed(
    live_server_factory: Callable[..., LiveServer],
) -> None:
    from webconnect.models import Namespace

    Namespace.objects.create(name="public", anonymous_read=True)
    server = live_server_factory(REALTIME_NAMESPACE_CACHE_SECONDS="0")
    url = f"{server.ws_url}/ws/"
    result = cli("publish", "chat.lobby", '{"text": "hi"}', url=url)
    assert result.returncode == 1
    line = one_line(result.stderr)
    # The server's own words come after: the connection was anonymous, so it lacked the scope.
    assert line.startswith("refused: a token is needed: pass --token or set WEBCONNECT_TOKEN"), line
    assert line.endswith(
        "(server: unauthorized: publish on chat.lobby is not allowed: token lacks scope realtime:write)"
    )
    # Reading the anonymous namespace needs no token.
    assert cli("history", "public.news", url=url).returncode == 0


def test_forbidden_is_refused_and_an_unknown_namespace_is_a_usage_error(
    live_daphne: LiveServer, alice: Any, bob: Any, mint_token: Callable[..., str]
) -> None:
    token = mint_token("alice", SCOPES)
    url = f"{live_daphne.ws_url}/ws/"
    forbidden = cli("subscribe", f"user.{bob.pk}", url=url, token=token)
    assert forbidden.returncode == 1
    assert one_line(forbidden.stderr).startswith(f"refused: forbidden: subscribe on user.{bob.pk} is not allowed")
    unknown = cli("publish", "nope.x", "1", url=url, token=token)
    assert unknown.returncode == 2 and one_line(unknown.stderr).startswith("error: not_found: ")
    ok = cli("publish", "chat.cli-ok", '{"n": 1}', url=url, token=token)
    assert ok.returncode == 0 and ok.stderr == "" and '"offset"' in ok.stdout
    read_only = cli("publish", "chat.cli-ok", "1", url=url, token=mint_token("alice", "realtime:read"))
    assert read_only.returncode == 1
    assert "lacks scope realtime:write" in one_line(read_only.stderr)


# --- Subscriptions the server ends ------------------------------------------------------------


@pytest.mark.usefixtures("no_policy_tests")
def test_a_subscription_ended_by_a_policy_change_prints_why_and_exits(
    alice: Any, bob: Any, live_server_factory: Callable[..., LiveServer], mint_token: Callable[..., str]
) -> None:
    from policies.models import AccessPolicy
    from policies.services import access_policy_save

    server = live_server_factory(POLICY_POLL_INTERVAL="1")
    alice_token, bob_token = mint_token("alice", SCOPES), mint_token("bob", SCOPES)
    with background_cli("subscribe", "chat.cli-policy", url=f"{server.ws_url}/ws/", token=bob_token) as subscriber:
        wait_present(server, alice_token, "chat.cli-policy", "bob", subscriber)
        publish(server, alice_token, "chat.cli-policy", '{"before": true}')
        access_policy_save(policy=AccessPolicy(name="no-chat", text=FORBID_CHAT), actor=None)
        code, stdout, stderr = finish(subscriber, within=20)
    assert code == 1, stderr
    assert '"payload": {"before": true}' in stdout  # what came before the change was printed
    line = one_line(stderr)
    assert line.startswith("refused: forbidden: subscription ended: subscribe on chat.cli-policy is not allowed")
    assert "no-chat" in line  # the policy that ended it


def _sign_in(server: LiveServer, username: str) -> requests.Session:
    session = requests.Session()
    form = session.get(f"{server.url}/accounts/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = session.post(
        f"{server.url}/accounts/login/",
        data={"csrfmiddlewaretoken": csrf.group(1), "username": username, "password": PASSWORD},
        timeout=10,
    )
    assert signed_in.ok and "/accounts/login/" not in signed_in.url
    return session


def test_signing_out_ends_a_ticket_subscription_with_close_4002(
    live_daphne: LiveServer, alice: Any, mint_token: Callable[..., str]
) -> None:
    session = _sign_in(live_daphne, "alice")
    ticket = session.post(
        f"{live_daphne.url}/api/realtime/tickets/",
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{live_daphne.url}/"},
        timeout=10,
    )
    assert ticket.status_code == 201, ticket.text
    url = f"{live_daphne.ws_url}/ws/"
    with background_cli("--ticket", ticket.json()["ticket"], "subscribe", "chat.cli-signout", url=url) as subscriber:
        wait_present(live_daphne, mint_token("alice", SCOPES), "chat.cli-signout", "alice", subscriber)
        home = session.get(f"{live_daphne.url}/", timeout=10)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home.text)
        assert csrf is not None
        session.post(f"{live_daphne.url}/accounts/logout/", data={"csrfmiddlewaretoken": csrf.group(1)}, timeout=10)
        code, _, stderr = finish(subscriber, within=20)
    assert code == 1
    assert one_line(stderr) == "refused: the server closed the connection: signed out (close 4002)"


def test_losing_the_connection_exits_3(
    alice: Any, live_server_factory: Callable[..., LiveServer], mint_token: Callable[..., str]
) -> None:
    server = live_server_factory()
    token = mint_token("alice", SCOPES)
    ticket = requests.post(
        f"{server.url}/api/realtime/tickets/", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert ticket.status_code == 201, ticket.text
    # With a ticket (single use) the CLI cannot reconnect: a lost connection ends it.
    args = ("--ticket", ticket.json()["ticket"], "subscribe", "chat.cli-lost")
    with background_cli(*args, url=f"{server.ws_url}/ws/") as subscriber:
        wait_present(server, token, "chat.cli-lost", "alice", subscriber)
        server.stop()
        code, _, stderr = finish(subscriber, within=20)
    assert code == 3
    assert one_line(stderr).startswith("connection lost: ")


@pytest.mark.services
def test_revoking_the_token_ends_a_subscription_with_close_4002(
    live_daphne: LiveServer, alice: Any, mint_token: Callable[..., str]
) -> None:
    import hashlib

    from oauth2_provider.models import AccessToken

    token = mint_token("alice", SCOPES)
    watcher = mint_token("alice", SCOPES)
    with background_cli("subscribe", "chat.cli-revoke", url=f"{live_daphne.ws_url}/ws/", token=token) as subscriber:
        wait_present(live_daphne, watcher, "chat.cli-revoke", "alice", subscriber)
        # The server hears of it through Redis (the channel layer).
        AccessToken.objects.get(token_checksum=hashlib.sha256(token.encode()).hexdigest()).revoke()
        code, _, stderr = finish(subscriber, within=20)
    assert code == 1
    assert one_line(stderr) == "refused: the server closed the connection: token revoked (close 4002)"
