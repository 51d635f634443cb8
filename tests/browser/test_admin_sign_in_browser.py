"""The admin's login page refuses a guesser in the browser with a message (issue 12, finding 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import PASSWORD, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_admin_login_refuses_a_guessing_address_with_a_message(
    page: Any, live_server_factory: Callable[..., LiveServer], make_user: Any
) -> None:
    server = live_server_factory(LOGIN_FAILURES_PER_ACCOUNT_IP="2/15minutes")
    make_user("keeper", superuser=True)

    def submit(password: str) -> int:
        page.goto(f"{server.url}/admin/login/")
        page.fill("#id_username", "keeper")
        page.fill("#id_password", password)
        with page.expect_response(lambda r: r.url.endswith("/admin/login/") and r.request.method == "POST") as info:
            page.click("input[type=submit]")
        page.wait_for_load_state()
        return int(info.value.status)

    assert submit("guess one") == 200
    assert "correct username and password" in page.text_content(".errornote")
    assert submit("guess two") == 200
    assert submit(PASSWORD) == 429  # this address is refused, the right password included
    assert "Too many failed sign-in attempts. Try again in about 15 minutes." in page.text_content(".errornote")
    assert "/admin/login/" in page.url
    page.goto(f"{server.url}/admin/")
    assert "/admin/login/" in page.url  # not signed in
