"""`manage.py backup` of a running studio, and `manage.py restore` of it on a new DATA_DIR.

The backup is taken while a run on an attached VM prints; the studio then goes away
(a lost machine), the backup is restored into a fresh DATA_DIR and a new studio started
on it. Everything is checked through the API as a user would: the API token, the users,
the finished run with its exact log and its output, the VM with its stored password
(checked again, and following the run that was printing to its end).
"""

import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import requests

from tests.services.live_stack import ROOT, LiveStack, free_port, stack_env, start_stack
from tests.studio.test_up_restart import (
    FINAL_STATUSES,
    attach_vm,
    get,
    stored_lines,
    submit,
    wait_until,
)

pytestmark = pytest.mark.e2e

# Bytes that are not text and end without a newline: the restored log must be exact.
PRINTS = """\
import sys
from pathlib import Path
sys.stdout.buffer.write(b"caf\\xc3\\xa9\\n\\x00\\xff raw")
Path("outputs").mkdir(exist_ok=True)
Path("outputs/model.bin").write_bytes(bytes(range(256)) * 40)
"""


def manage(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=stack_env(data_dir, free_port()),
        capture_output=True,
        text=True,
        timeout=120,
    )


def submit_script(stack: LiveStack, api: requests.Session, script: str) -> int:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as source:
        source.writestr("train.py", script)
    response = api.post(
        f"{stack.url}/api/v1/runs",
        data={"experiment": "backup", "target": "local", "entry_script": "train.py"},
        files={"snapshot": ("source.zip", archive.getvalue(), "application/zip")},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture
def tmp():
    with tempfile.TemporaryDirectory(prefix="ty-backup-") as path:
        yield Path(path)


def test_a_backup_of_a_running_studio_restores_everything(tmp, sshd, shared_dir, monkeypatch):
    # The restored studio takes over the run the old one was following once its lease
    # (held by the old monitor in the copied database) runs out.
    monkeypatch.setenv("MONITOR_LEASE_SECONDS", "5")
    old = start_stack(tmp / "old")
    try:
        token = old.manage("create_token", "alice", "--name", "backup").stdout.strip()
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {token}"
        api.params = {"workspace": old.workspace_slug}
        done = submit_script(old, api, PRINTS)
        attach_vm(old, api, sshd, "backup-vm")
        go = shared_dir / "go"
        printing = submit(old, api, "backup-vm", go)
        wait_until(lambda: get(old, api, f"/runs/{done}").json()["status"] in FINAL_STATUSES, "run")
        run = get(old, api, f"/runs/{done}").json()
        assert run["status"] == "Completed", run
        log = get(old, api, f"/runs/{done}/logs", stream="stdout", offset=0).content
        assert log == b"caf\xc3\xa9\n\x00\xff raw"
        wait_until(lambda: len(stored_lines(old, api, printing)) >= 5, "output of the run")
        result = old.manage("backup", str(tmp / "backup"))
        assert "Backed up to" in result.stdout
    finally:
        old.stop()

    backup = tmp / "backup"
    assert backup.stat().st_mode & 0o777 == 0o700
    files = [p for p in backup.rglob("*") if p.is_file()]
    assert {p.stat().st_mode & 0o777 for p in files} == {0o600}
    assert not list(tmp.glob(".backup.partial-*"))

    new = tmp / "new"
    result = manage(new, "restore", str(backup))
    assert result.returncode == 0, result.stderr
    assert "Restored the backup" in result.stdout
    assert (new / "fernet.key").read_bytes() == (tmp / "old" / "fernet.key").read_bytes()
    assert (new / "fernet.key").stat().st_mode & 0o777 == 0o600
    restored = start_stack(new, seed=False)
    try:
        restored.workspace_slug = old.workspace_slug
        members = get(restored, api, f"/workspaces/{old.workspace_slug}/members").json()
        assert {m["user"] for m in members} >= {"alice", "bob", "carol"}

        assert get(restored, api, f"/runs/{done}").json()["status"] == "Completed"
        assert get(restored, api, f"/runs/{done}/logs", stream="stdout", offset=0).content == log
        model = get(restored, api, f"/runs/{done}/files/outputs/model.bin").content
        assert model == bytes(range(256)) * 40

        # The VM's password was decrypted with the restored key: checked again, and the
        # run that printed during the backup is followed to its end, no line lost or twice.
        response = api.post(f"{restored.url}/api/v1/computes/backup-vm/check", timeout=30)
        assert response.status_code == 202, response.text
        go.touch()
        wait_until(
            lambda: get(restored, api, f"/runs/{printing}").json()["status"] in FINAL_STATUSES,
            "the run to end on the restored studio",
        )
        run = get(restored, api, f"/runs/{printing}").json()
        assert (run["status"], run["exit_code"]) == ("Completed", 0), run
        count = int(get(restored, api, f"/runs/{printing}/files/outputs/lines.txt").text)
        lines = stored_lines(restored, api, printing)
        assert lines == [f"line {i}" for i in range(1, count + 1)]
        wait_until(
            lambda: (
                get(restored, api, "/computes/backup-vm").json()["state"] in ("Succeeded", "Failed")
            ),
            "the check of the VM",
        )
        assert get(restored, api, "/computes/backup-vm").json()["state"] == "Succeeded"
    finally:
        restored.stop()
