"""Trainyard itself, started with `manage.py up` in a subprocess, for end-to-end tests."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"

SEED = (
    """
import django; django.setup()
from django.contrib.auth import get_user_model
from studio.models import Role
from studio.services import membership_set, workspace_create
User = get_user_model()
users = {
    n: User.objects.create_user(username=n, password=%r)
    for n in ("alice", "bob", "carol", "charlie")
}
users["alice"].is_staff = users["alice"].is_superuser = True
users["alice"].save()
ws = workspace_create(name="Vision", owner=users["alice"])
membership_set(workspace=ws, user=users["bob"], role=Role.READER)
membership_set(workspace=ws, user=users["carol"], role=Role.CONTRIBUTOR)
workspace_create(name="Charlie's own", owner=users["charlie"])
print(ws.slug)
"""
    % PASSWORD
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveStack:
    url: str
    port: int
    data_dir: Path
    env: dict
    process: subprocess.Popen
    workspace_slug: str
    password: str = PASSWORD
    # Variables set over the defaults of `stack_env`, kept for `start_again`.
    extra_env: dict | None = None

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def output(self) -> str:
        return (self.data_dir / "up.out").read_text()

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=timeout)
        return self.process.returncode

    def start_again(self) -> None:
        """Start Trainyard once more, after `stop`, on the same data, database and port."""
        self.process = start_stack(
            self.data_dir, seed=False, port=self.port, extra_env=self.extra_env
        ).process


def stack_env(data_dir: Path, port: int, extra_env: dict | None = None) -> dict:
    """The stack's environment: embedded Redis, unless `extra_env` names another (REDIS_URL)."""
    env = dict(os.environ)
    env.update(
        DATA_DIR=str(data_dir),
        PORT=str(port),
        DJANGO_SETTINGS_MODULE="studio.settings",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REDIS_URL", None)
    # The stack's targets (test sshd, emulators) listen on this machine.
    env.setdefault("OUTBOUND_ALLOW", "public,unix,127.0.0.0/8,::1")
    env.update(extra_env or {})
    return env


def start_stack(
    data_dir: Path, seed: bool = True, port: int | None = None, extra_env: dict | None = None
) -> LiveStack:
    port = port or free_port()
    env = stack_env(data_dir, port, extra_env)
    slug = ""
    if seed:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--verbosity", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
        )
        slug = subprocess.run(
            [sys.executable, "-c", SEED],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=120,
            capture_output=True,
            text=True,
        ).stdout.strip()
    out = open(data_dir / "up.out", "wb")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen(
        [sys.executable, "manage.py", "up"],
        cwd=ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    stack = LiveStack(
        f"http://127.0.0.1:{port}", port, data_dir, env, process, slug, extra_env=extra_env
    )
    deadline = time.monotonic() + 90
    while "is running at" not in stack.output():
        if process.poll() is not None or time.monotonic() > deadline:
            stack.stop()
            raise RuntimeError(f"Trainyard did not start:\n{stack.output()}")
        time.sleep(0.2)
    return stack


@pytest.fixture(scope="session")
def live_stack():
    with tempfile.TemporaryDirectory(prefix="ty-stack-") as tmp:
        stack = start_stack(Path(tmp))
        yield stack
        stack.stop()


@pytest.fixture(scope="session")
def browser_type_launch_args():
    return {
        "executable_path": "/usr/bin/chromium",
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


def login(page, stack: LiveStack, username: str) -> None:
    page.goto(f"{stack.url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{stack.url}/w/**")
