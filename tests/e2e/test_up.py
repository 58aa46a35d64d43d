"""`manage.py up` (what `make run` calls), started as a user would start it."""

import json
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.services.live_stack import ROOT, free_port, stack_env, start_stack

pytestmark = pytest.mark.e2e


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_up_runs_everything_then_stops_cleanly_and_reuses_data():
    with tempfile.TemporaryDirectory(prefix="ty-up-") as tmp:
        data_dir = Path(tmp)
        stack = start_stack(data_dir, seed=False)
        try:
            first = stack.output()
            assert f"Trainyard is running at http://127.0.0.1:{stack.port}/" in first
            assert "username: admin" in first and "password: " in first
            assert (data_dir / "secret_key").exists() and (data_dir / "fernet.key").exists()

            status, body = get_json(f"{stack.url}/healthz")
            # The worker and the monitor may need a moment after the web server answers.
            for _ in range(50):
                if status == 200:
                    break
                status, body = get_json(f"{stack.url}/healthz")
            assert status == 200, body
            assert all(check["ok"] for check in body["checks"].values())
            children = psutil.Process(stack.process.pid).children(recursive=True)
            assert len(children) >= 5
        finally:
            assert stack.stop() == 0
        assert not [c for c in children if c.is_running() and c.status() != "zombie"]
        assert "Stopped." in stack.output()
        secret_key = (data_dir / "secret_key").read_text()

        again = start_stack(data_dir, seed=False)
        try:
            assert "username: admin" not in again.output()
            assert (data_dir / "secret_key").read_text() == secret_key
        finally:
            again.stop()


def test_up_refuses_a_taken_port():
    with tempfile.TemporaryDirectory(prefix="ty-up-") as tmp, socket.socket() as taken:
        port = free_port()
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = subprocess.run(
            [sys.executable, "manage.py", "up"],
            cwd=ROOT,
            env=stack_env(Path(tmp), port),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
