"""/healthz and the Settings page show what `manage.py up` reports of its processes."""

import json
import os
import subprocess

import pytest
from django.test import Client

from studio.supervisor import state_path
from tests.conftest import client_for

RESTARTING = {
    "pid": os.getpid(),
    "updated_at": "2026-01-05T10:00:00+00:00",
    "processes": {
        "web": {
            "state": "running",
            "pid": 4242,
            "restarts": 0,
            "last_exit": "",
            "last_exit_at": "",
            "next_restart_at": "",
        },
        "monitor": {
            "state": "restarting",
            "pid": None,
            "restarts": 2,
            "last_exit": "killed by SIGKILL",
            "last_exit_at": "2026-01-05T09:59:58+00:00",
            "next_restart_at": "2026-01-05T10:00:02+00:00",
        },
    },
}


@pytest.fixture
def up_state():
    """A state file as `up` (here: this process, which is alive) writes it."""

    def write(state: dict) -> None:
        state_path().parent.mkdir(parents=True, exist_ok=True)
        state_path().write_text(json.dumps(state))

    yield write
    state_path().unlink(missing_ok=True)


def test_a_restarting_process_fails_healthz_and_only_staff_see_why(db, up_state, alice, bob):
    up_state(RESTARTING)
    alice.is_staff = True
    alice.save()
    for caller in (Client(), client_for(bob)):
        response = caller.get("/healthz")
        assert response.status_code == 503
        check = response.json()["checks"]["processes"]
        assert check == {"ok": False, "detail": "monitor restarting (restart 3)"}
        assert "SIGKILL" not in response.content.decode()

    staff = client_for(alice).get("/healthz").json()["checks"]["processes"]
    assert staff["ok"] is False
    assert staff["processes"]["monitor"]["last_exit"] == "killed by SIGKILL"
    assert staff["processes"]["monitor"]["next_restart_at"] == "2026-01-05T10:00:02+00:00"
    assert staff["processes"]["web"]["pid"] == 4242


def test_without_up_the_processes_check_passes_and_says_so(db, up_state, client):
    check = client.get("/healthz").json()["checks"]["processes"]
    assert check["ok"] is True and "not started by `manage.py up`" in check["detail"]

    # A file left by an `up` that was killed outright is not taken for a running one.
    gone = subprocess.Popen(["true"])
    gone.wait()
    up_state({**RESTARTING, "pid": gone.pid})
    check = client.get("/healthz").json()["checks"]["processes"]
    assert check["ok"] is True and "not started by `manage.py up`" in check["detail"]


def test_the_settings_page_shows_the_processes_to_staff_only(db, up_state, workspace, alice):
    up_state(RESTARTING)
    url = f"/w/{workspace.slug}/settings/"
    owner_page = client_for(alice).get(url)
    assert owner_page.status_code == 200
    assert "Trainyard processes" not in owner_page.content.decode()

    alice.is_staff = True
    alice.save()
    page = client_for(alice).get(url).content.decode()
    assert "Trainyard processes" in page
    assert "killed by SIGKILL at 2026-01-05T09:59:58+00:00" in page
    assert "restarting" in page and "2026-01-05T10:00:02+00:00" in page

    state_path().unlink()
    page = client_for(alice).get(url).content.decode()
    assert "Not started by <code>manage.py up</code>" in page
