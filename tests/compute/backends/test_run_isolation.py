"""Run code on the local target cannot reach the studio: not its account, keys, database,
blobs, logs, environment, nor another workspace's runs."""

from __future__ import annotations

import json
import os

import pytest
from django.conf import settings
from django.urls import reverse

from compute import sandbox
from compute.models import ComputeTarget
from runs.logs import store as logstore
from runs.models import RunStatus
from studio.models import Workspace
from tests.conftest import client_for
from tests.support.runs import running_monitor, submit, wait_final, wait_for, write_tree

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.sandbox]

PROBE = r"""
import json, os, sys

targets = json.loads(sys.argv[1])
results = {"uid": os.getuid(), "canary_in_environ": "TRAINYARD_CANARY" in os.environ}


def attempt(name, action):
    try:
        action()
    except OSError as exc:
        results[name] = "denied: " + type(exc).__name__
    else:
        results[name] = "ALLOWED"


def read(path):
    with open(path, "rb") as f:
        f.read(1)


def write(path):
    with open(path, "ab") as f:
        f.write(b"x")


for key in ("fernet_key", "secret_key", "instance_id", "database", "blob", "log",
            "other_run_file", "environ"):
    if key in targets:
        attempt("read " + key, lambda p=targets[key]: read(p))
for key in ("data_dir", "blobs", "logs", "other_run_wd"):
    attempt("list " + key, lambda p=targets[key]: os.listdir(p) or None)
for key in ("fernet_key", "other_run_file"):
    attempt("write " + key, lambda p=targets[key]: write(p))
attempt("create in data_dir", lambda: write(os.path.join(targets["data_dir"], "planted")))
attempt("create in blobs", lambda: write(os.path.join(targets["blobs"], "planted")))
attempt("create in other_run_wd", lambda: write(os.path.join(targets["other_run_wd"], "planted")))
attempt("signal studio", lambda: os.kill(targets["studio_pid"], 0))
print("PROBE " + json.dumps(results), flush=True)
"""

HOLDER = (
    "import time\n"
    "open('mine.txt', 'w').write('workspace secret data')\n"
    "print('holding', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.fixture
def local(workspace):
    return ComputeTarget.objects.get(workspace=workspace, kind="local")


def test_isolation_is_available_when_the_studio_runs_as_root():
    if os.geteuid() != 0:
        pytest.skip("the sandbox needs root; this run of the suite is not root")
    assert sandbox.isolation_problem() == ""


def test_run_code_reads_and_writes_nothing_of_the_studio(
    tmp_path, workspace, alice, charlie, local, monkeypatch
):
    assert sandbox.isolation_problem() == "", "local runs must be isolated here"
    monkeypatch.setenv("TRAINYARD_CANARY", "studio-only")
    theirs = Workspace.objects.get(name="Charlie's own")
    their_local = ComputeTarget.objects.get(workspace=theirs, kind="local")
    with running_monitor():
        holder = submit(
            workspace=theirs,
            user=charlie,
            target=their_local,
            source=write_tree(tmp_path / "holder", {"train.py": HOLDER}),
        )
        holder = wait_for(holder, [RunStatus.RUNNING])
        while b"holding" not in logstore.read(holder.pk, "stdout")[0]:
            holder.refresh_from_db()
            assert holder.status == RunStatus.RUNNING, holder.error
        assert holder.handle is not None
        other_wd = f"{holder.handle['run_dir']}/wd"
        blob = next(p for p in settings.BLOB_DIR.rglob("*") if p.is_file())
        log = next(p for p in settings.LOG_DIR.rglob("*") if p.is_file())
        targets = {
            "fernet_key": str(settings.DATA_DIR / "fernet.key"),
            "secret_key": str(settings.DATA_DIR / "secret_key"),
            "instance_id": str(settings.DATA_DIR / "instance_id"),
            "blob": str(blob),
            "log": str(log),
            "other_run_file": f"{other_wd}/mine.txt",
            "other_run_wd": other_wd,
            "environ": f"/proc/{os.getpid()}/environ",
            "data_dir": str(settings.DATA_DIR),
            "blobs": str(settings.BLOB_DIR),
            "logs": str(settings.LOG_DIR),
            "studio_pid": os.getpid(),
        }
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            targets["database"] = str(settings.DATABASES["default"]["TEST"]["NAME"])
        fernet_before = (settings.DATA_DIR / "fernet.key").read_bytes()
        probe = submit(
            workspace=workspace,
            user=alice,
            target=local,
            source=write_tree(tmp_path / "probe", {"train.py": PROBE}),
            arguments=[json.dumps(targets)],
        )
        probe = wait_final(probe)
        after = submit(
            workspace=workspace,
            user=alice,
            target=local,
            source=write_tree(tmp_path / "after", {"train.py": "print('still fine')\n"}),
        )
        after = wait_final(after)
        assert holder.handle
        holder.refresh_from_db()
        assert holder.status == RunStatus.RUNNING
        from runs.services.lifecycle import run_cancel

        run_cancel(run=holder, user=charlie)
        wait_final(holder)

    assert probe.status == RunStatus.COMPLETED, (probe.error, probe.stderr_tail)
    stdout = logstore.read(probe.pk, "stdout")[0].decode()
    results = json.loads(stdout.split("PROBE ", 1)[1])
    assert results.pop("uid") not in (0, os.geteuid())
    assert results.pop("canary_in_environ") is False
    allowed = [name for name, outcome in results.items() if not outcome.startswith("denied")]
    assert allowed == [], results
    assert {
        "read fernet_key",
        "read secret_key",
        "read blob",
        "read log",
        "read environ",
        "read other_run_file",
        "write other_run_file",
        "create in data_dir",
        "signal studio",
    } <= set(results)
    assert (settings.DATA_DIR / "fernet.key").read_bytes() == fernet_before
    assert not (settings.DATA_DIR / "planted").exists()
    assert not (settings.BLOB_DIR / "planted").exists()
    assert after.status == RunStatus.COMPLETED
    assert b"still fine" in logstore.read(after.pk, "stdout")[0]


def test_a_run_can_use_its_own_folder_temp_and_environment(tmp_path, workspace, alice, local):
    script = (
        "import os, tempfile\n"
        "open('outputs/model.txt', 'w').write('weights')\n"
        "with tempfile.NamedTemporaryFile() as f:\n"
        "    f.write(b'scratch')\n"
        "print('home', os.environ['HOME'], 'mark', 'TRAINYARD_RUN_MARK' in os.environ)\n"
    )
    with running_monitor():
        run = wait_final(
            submit(
                workspace=workspace,
                user=alice,
                target=local,
                source=write_tree(tmp_path / "src", {"train.py": script}),
            )
        )
    assert run.status == RunStatus.COMPLETED, (run.error, run.stderr_tail)
    assert b"home /tmp mark True" in logstore.read(run.pk, "stdout")[0]
    assert [f.path for f in run.files.all()] == ["outputs/model.txt"]


def test_staff_only_local_target_refuses_others_and_says_why(
    tmp_path, workspace, alice, local, settings
):
    settings.LOCAL_TARGET_ACCESS = "staff"
    source = write_tree(tmp_path / "src", {"train.py": "print(1)\n"})
    with pytest.raises(Exception, match="Only staff may run code on the local target"):
        submit(workspace=workspace, user=alice, target=local, source=source)
    page = client_for(alice).get(reverse("compute_detail", args=[workspace.slug, local.name]))
    assert "Only staff may run code on the local target" in page.content.decode()


def test_staff_may_use_a_staff_only_local_target(tmp_path, workspace, alice, local, settings):
    settings.LOCAL_TARGET_ACCESS = "staff"
    alice.is_staff = True
    alice.save()
    with running_monitor():
        run = wait_final(
            submit(
                workspace=workspace,
                user=alice,
                target=local,
                source=write_tree(tmp_path / "src", {"train.py": "print('staff run')\n"}),
            )
        )
    assert run.status == RunStatus.COMPLETED, run.error


def test_without_isolation_only_staff_may_use_the_local_target(
    tmp_path, workspace, alice, local, settings
):
    settings.LOCAL_RUN_USER = "no-such-account-here"
    sandbox._probe.cache_clear()
    try:
        source = write_tree(tmp_path / "src", {"train.py": "print(1)\n"})
        with pytest.raises(Exception, match="cannot be isolated") as refused:
            submit(workspace=workspace, user=alice, target=local, source=source)
        assert "no-such-account-here" in str(refused.value)
        page = client_for(alice).get(reverse("compute_detail", args=[workspace.slug, local.name]))
        text = page.content.decode()
        assert "cannot be isolated" in text
        assert "make run" in text
    finally:
        settings.LOCAL_RUN_USER = "trainyard-run"
        sandbox._probe.cache_clear()


def test_a_local_target_turned_off_refuses_everyone(tmp_path, workspace, alice, local, settings):
    settings.LOCAL_TARGET_ACCESS = "off"
    alice.is_staff = True
    alice.save()
    source = write_tree(tmp_path / "src", {"train.py": "print(1)\n"})
    with pytest.raises(Exception, match="LOCAL_TARGET_ACCESS=off"):
        submit(workspace=workspace, user=alice, target=local, source=source)
