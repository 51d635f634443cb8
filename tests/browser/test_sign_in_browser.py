"""A person signs in through Chromium and reaches the home page and the admin."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PASSWORD, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signing_in_through_the_login_page_reaches_home_and_admin(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    make_user("operator", superuser=True)
    page.goto(f"{live_daphne.url}/")
    assert "/accounts/login/" in page.url  # strangers are sent to sign in
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_daphne.url}/")
    assert page.text_content("[data-testid=current-user]") == "operator"
    assert "Welcome, operator" in page.text_content("h1")

    page.click("[data-testid=link-admin]")
    page.wait_for_url(f"{live_daphne.url}/admin/")
    assert "webconnect administration" in page.text_content("#site-name")
    # The stylesheet came from the project itself.
    assert page.evaluate("getComputedStyle(document.body).margin") is not None


def test_a_wrong_password_shows_an_error_in_the_page(page: Any, live_daphne: LiveServer, make_user: Any) -> None:
    make_user("walter")
    page.goto(f"{live_daphne.url}/accounts/login/")
    page.fill("#id_username", "walter")
    page.fill("#id_password", "not it")
    page.click("button[type=submit]")
    assert "correct username and password" in page.text_content("[role=alert]")
    assert "/accounts/login/" in page.url


def test_an_empty_sign_in_form_shows_an_error_under_each_empty_field(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    make_user("walter")
    page.goto(f"{live_daphne.url}/accounts/login/")
    page.click("button[type=submit]")
    page.wait_for_selector("#id_username_errors")
    assert page.text_content("#id_username_errors") == "Enter your username."
    assert page.text_content("#id_password_errors") == "Enter your password."
    assert "/accounts/login/" in page.url

    page.fill("#id_username", "walter")
    page.click("button[type=submit]")
    page.wait_for_selector("#id_password_errors")
    assert page.locator("#id_username_errors").count() == 0
    assert page.input_value("#id_username") == "walter"  # kept
    assert page.text_content("#id_password_errors") == "Enter your password."


def test_opening_the_sign_out_address_shows_a_sign_out_button(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    make_user("walter")
    page.goto(f"{live_daphne.url}/accounts/login/")
    page.fill("#id_username", "walter")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_daphne.url}/")

    response = page.goto(f"{live_daphne.url}/accounts/logout/")  # a bookmark, a typed address
    assert response is not None and response.status == 200
    assert page.text_content("h1") == "Sign out"
    assert "walter" in (page.text_content(".auth-box") or "")
    with page.expect_navigation(url="**/accounts/login/"):
        page.click("[data-testid=confirm-sign-out]")

    page.goto(f"{live_daphne.url}/")
    assert "/accounts/login/" in page.url  # signed out for real
    response = page.goto(f"{live_daphne.url}/accounts/logout/")
    assert response is not None and response.status == 200
    assert page.text_content("h1") == "You are signed out"
    page.click("text=Sign in again")
    page.wait_for_url("**/accounts/login/")
