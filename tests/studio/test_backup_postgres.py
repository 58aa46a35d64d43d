"""A backup on PostgreSQL (`pg_dump` in one snapshot) restores into a new empty database,
with its users and the secrets its key decrypts. Runs in the suite's PostgreSQL pass."""

import os
import subprocess
import sys
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from compute.models import AuthMethod, ComputeKind, ComputeTarget
from studio.backup import backup_create
from studio.services import workspace_create
from tests.services.live_stack import ROOT

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.getenv("DATABASE_URL", "").startswith("postgres"),
        reason="runs in the suite's PostgreSQL pass (DATABASE_URL set)",
    ),
]

READ_BACK = """
from django.contrib.auth import get_user_model
from compute.models import ComputeTarget
print(sorted(get_user_model().objects.values_list("username", flat=True)))
print(ComputeTarget.objects.get(name="gpu-box").password)
"""


@pytest.fixture
def empty_database():
    name = f"restored_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def manage(data_dir, database_url, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATA_DIR=str(data_dir), DATABASE_URL=database_url)
    env["DJANGO_SETTINGS_MODULE"] = "studio.settings"
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_postgresql_backup_restores_into_an_empty_database(
    transactional_db, settings, tmp_path, empty_database
):
    settings.DATA_DIR = tmp_path / "data"
    settings.DATA_DIR.mkdir()
    (settings.DATA_DIR / "fernet.key").write_text(settings.FERNET_KEYS[0])
    alice = get_user_model().objects.create_user(username="alice")
    workspace = workspace_create(name="Vision", owner=alice)
    ComputeTarget.objects.create(
        workspace=workspace,
        name="gpu-box",
        kind=ComputeKind.VM,
        auth_method=AuthMethod.PASSWORD,
        password="s3cret-vm-password",
    )
    manifest = backup_create(dest=tmp_path / "backup")
    assert manifest["database"] == {"engine": "postgresql", "file": "database.pgdump"}
    assert manifest["counts"]["users"] == 1

    result = manage(tmp_path / "new", empty_database, "restore", str(tmp_path / "backup"))
    assert result.returncode == 0, result.stderr
    result = manage(tmp_path / "new", empty_database, "shell", "-c", READ_BACK)
    assert result.stdout.splitlines()[-2:] == ["['alice']", "s3cret-vm-password"], result.stderr
