import re

import pytest
from django.core import mail
from django.test import Client
from django.utils.html import escape

from portal.models import Membership
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def sign_up(client: Client, email: str) -> None:
    response = client.post(
        "/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302, response.content


def confirmation_link(email: str) -> str:
    message = next(m for m in reversed(mail.outbox) if email in m.to)
    return re.search(r"http://testserver(/accounts/confirm-email/\S+/)", message.body).group(1)


def test_sign_up_verifies_email_and_creates_a_personal_org():
    client = Client()
    sign_up(client, "new@example.com")
    membership = Membership.objects.get(user__email="new@example.com")
    assert membership.org.is_personal and membership.role == "owner"
    # Unverified accounts cannot use the portal yet.
    assert client.get("/dashboard/").status_code == 302
    link = confirmation_link("new@example.com")
    assert client.post(link).status_code == 302
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert escape(membership.org.name) in response.content.decode()


def test_log_in_and_log_out(owner):
    client = Client()
    response = client.post("/accounts/login/", {"login": owner.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/dashboard/").status_code == 302


def test_repeated_failed_log_ins_are_throttled(owner):
    client = Client()
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": owner.email, "password": "wrong"})
        assert response.status_code == 200
    # Even the right password is refused until the window passes.
    response = client.post("/accounts/login/", {"login": owner.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert client.get("/dashboard/").status_code == 302


def test_password_reset_sends_a_working_link(owner):
    client = Client()
    response = client.post("/accounts/password/reset/", {"email": owner.email})
    assert response.status_code == 302
    body = mail.outbox[-1].body
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+/)", body).group(1)
    response = client.get(link, follow=True)
    form_url = response.redirect_chain[-1][0] if response.redirect_chain else link
    response = client.post(
        form_url,
        {"password1": "a-brand-new-passphrase-77", "password2": "a-brand-new-passphrase-77"},
    )
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.check_password("a-brand-new-passphrase-77")


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"email": "", "password1": "", "password2": ""},
        {"email": "not-an-email", "password1": PASSWORD, "password2": PASSWORD},
        {"email": "a@example.com", "password1": PASSWORD, "password2": PASSWORD + "x"},
        {"email": "a@example.com", "password1": "123", "password2": "123"},
    ],
)
def test_bad_sign_ups_create_nothing(data):
    response = Client().post("/accounts/signup/", data)
    assert response.status_code == 200
    assert not Membership.objects.exists()


def test_duplicate_email_sign_up_is_rejected(owner):
    response = Client().post(
        "/accounts/signup/",
        {"email": owner.email.upper(), "password1": PASSWORD, "password2": PASSWORD},
    )
    assert Membership.objects.filter(user__email__iexact=owner.email).count() == 1
    assert response.status_code in (200, 302)
