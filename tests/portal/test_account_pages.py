"""The sign-up, log-in and e-mail pages speak as Model Portal, not as stock allauth, and
put each error under the field it is about."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

MISMATCH = "The email address and/or password you specified are not correct."
# allauth's stock headings and buttons: none of them may show on our pages.
STOCK_WORDS = ["Sign In", "Sign Up", "Sign Out", "Password Reset", "Verify Your Email Address"]


def field_block(html: str, name: str) -> str:
    """The markup of one field's block (templates/account/_field.html): from its start
    to the next field or the form's button."""
    start = html.index(f'<div class="field" id="field-{name}">')
    ends = [html.find(marker, start + 1) for marker in ('<div class="field"', "<button")]
    return html[start : min(end for end in ends if end != -1)]


def test_a_wrong_password_is_said_under_the_password_field(owner):
    response = Client().post("/accounts/login/", {"login": owner.email, "password": "wrong"})
    html = response.content.decode()
    assert response.status_code == 200
    assert MISMATCH in field_block(html, "password")
    assert MISMATCH not in field_block(html, "login")
    assert html.count(MISMATCH) == 1


def test_an_empty_log_in_marks_each_missing_field(db):
    html = Client().post("/accounts/login/", {"login": "", "password": ""}).content.decode()
    assert "This field is required." in field_block(html, "login")
    assert "This field is required." in field_block(html, "password")


def test_sign_up_errors_sit_under_their_fields(db):
    html = (
        Client()
        .post(
            "/accounts/signup/",
            {"email": "not-an-email", "password1": PASSWORD, "password2": PASSWORD + "x"},
        )
        .content.decode()
    )
    assert "Enter a valid email address." in field_block(html, "email")
    assert "You must type the same password each time." in field_block(html, "password2")
    assert "You must type the same password" not in field_block(html, "password1")


def test_a_too_short_password_is_said_under_the_password_field(db):
    html = (
        Client()
        .post(
            "/accounts/signup/", {"email": "a@example.com", "password1": "123", "password2": "123"}
        )
        .content.decode()
    )
    assert "too short" in field_block(html, "password1")


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/accounts/login/", "Log in to Model Portal"),
        ("/accounts/signup/", "Create your Model Portal account"),
        ("/accounts/password/reset/", "Reset your password"),
        ("/accounts/password/reset/done/", "Check your e-mail"),
        ("/accounts/confirm-email/not-a-key/", "Confirm your e-mail address"),
    ],
)
def test_entrance_pages_are_in_the_portals_words(db, path, heading):
    html = Client().get(path).content.decode()
    assert f"<h1>{heading}</h1>" in html
    assert not [word for word in STOCK_WORDS if word in html]


def test_pages_of_a_logged_in_user_are_in_the_portals_words(owner):
    client = Client()
    client.force_login(owner)
    for path, heading in [
        ("/accounts/logout/", "Log out of Model Portal?"),
        ("/accounts/email/", "Your e-mail addresses"),
    ]:
        html = client.get(path).content.decode()
        assert f"<h1>{heading}</h1>" in html, path
        assert not [word for word in STOCK_WORDS if word in html], path


def test_sign_up_lands_on_the_portals_check_your_email_page(db):
    response = Client().post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
        follow=True,
    )
    assert "<h1>Confirm your e-mail address</h1>" in response.content.decode()
    assert mail.outbox


def test_a_password_reset_link_asks_for_a_new_password_in_our_words(owner):
    client = Client()
    client.post("/accounts/password/reset/", {"email": owner.email})
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", mail.outbox[-1].body)
    response = client.get(link.group(1), follow=True)
    html = response.content.decode()
    assert "<h1>Choose a new password</h1>" in html
    mismatch = client.post(
        response.redirect_chain[-1][0],
        {"password1": "a-brand-new-passphrase-77", "password2": "something-else-entirely-1"},
    ).content.decode()
    assert "You must type the same password each time." in field_block(mismatch, "password2")
    bad = client.get("/accounts/password/reset/key/1-not-a-key/").content.decode()
    assert "<h1>This reset link no longer works</h1>" in bad


def test_the_emails_and_messages_are_in_the_portals_words(owner):
    client = Client()
    client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    client.post("/accounts/password/reset/", {"email": owner.email})
    confirm, reset = mail.outbox[-2:]
    assert confirm.subject.endswith("Confirm your e-mail address")
    assert "signed up for Model Portal" in confirm.body
    assert reset.subject.endswith("Reset your password")
    assert "choose a new password" in reset.body
    assert all(m.body.startswith("Hello from Model Portal") for m in (confirm, reset))
    response = client.post(
        "/accounts/login/", {"login": owner.email, "password": PASSWORD}, follow=True
    )
    assert f"Logged in as {owner.email}." in response.content.decode()
