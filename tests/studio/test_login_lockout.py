"""Sign-in attempts are rate-limited: wrong passwords lock the user name from that address."""

from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.factories import PASSWORD

LOCKED = "Too many wrong passwords"


def sign_in(client: Client, username: str, password: str, address: str = "192.0.2.10"):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address
    )


def test_wrong_passwords_lock_the_sign_in_and_the_right_one_is_refused_too(alice):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        wrong = sign_in(client, "alice", "not-it")
        assert wrong.status_code == 200
        assert "do not match" in wrong.content.decode()
    locked = sign_in(client, "alice", "not-it")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert LOCKED in page and f"paused for {settings.LOGIN_LOCKOUT_MINUTES} minutes" in page

    right = sign_in(client, "alice", PASSWORD)
    assert right.status_code == 429 and LOCKED in right.content.decode()
    assert client.get(reverse("root")).status_code == 302
    assert "_auth_user_id" not in client.session


def test_a_lockout_holds_only_that_user_from_that_address(alice, bob):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in(Client(), "alice", "not-it")
    assert sign_in(Client(), "alice", PASSWORD).status_code == 429

    other_user = sign_in(Client(), "bob", PASSWORD)
    assert other_user.status_code == 302
    other_address = sign_in(Client(), "alice", PASSWORD, address="192.0.2.99")
    assert other_address.status_code == 302


def test_a_successful_sign_in_starts_the_count_again(alice):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(Client(), "alice", "not-it")
    assert sign_in(Client(), "alice", PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(Client(), "alice", "not-it")
    assert sign_in(Client(), "alice", PASSWORD).status_code == 302


def test_the_admin_sign_in_is_limited_too(alice):
    alice.is_staff = True
    alice.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            "/admin/login/", {"username": "alice", "password": "nope"}, REMOTE_ADDR="192.0.2.10"
        )
    locked = Client().post(
        "/admin/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="192.0.2.10"
    )
    assert locked.status_code == 429 and LOCKED in locked.content.decode()
