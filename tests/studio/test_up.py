"""`manage.py up` (what `make run` calls), started as a user would start it."""

import http.cookiejar
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.services.live_stack import ROOT, free_port, stack_env, start_stack

pytestmark = pytest.mark.e2e

FIRST_ADMIN = re.compile(r"username: (?P<username>\S+)\n\s+password: (?P<password>\S+)")


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def signed_in_page(url: str, username: str, password: str) -> str:
    """Sign in through the login form as a browser would; the address it lands on."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    with opener.open(f"{url}/login/", timeout=10) as response:
        form = response.read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert csrf, form
    fields = {"csrfmiddlewaretoken": csrf[1], "username": username, "password": password}
    with opener.open(
        f"{url}/login/", data=urllib.parse.urlencode(fields).encode(), timeout=10
    ) as response:
        return response.geturl()


def first_admin(output: str) -> tuple[str, str]:
    match = FIRST_ADMIN.search(output)
    assert match, output
    return match["username"], match["password"]


def test_up_runs_everything_then_stops_cleanly_and_reuses_data():
    with tempfile.TemporaryDirectory(prefix="ty-up-") as tmp:
        data_dir = Path(tmp)
        stack = start_stack(data_dir, seed=False)
        try:
            first = stack.output()
            assert f"Trainyard is running at http://127.0.0.1:{stack.port}/" in first
            username, password = first_admin(first)
            assert username == "admin"
            assert first.index("password: ") < first.index("Trainyard is running at")
            assert signed_in_page(stack.url, username, password) == f"{stack.url}/w/default/"
            assert signed_in_page(stack.url, username, "wrong") == f"{stack.url}/login/"
            assert (data_dir / "secret_key").exists() and (data_dir / "fernet.key").exists()

            status, body = get_json(f"{stack.url}/healthz")
            # The worker and the monitor may need a moment after the web server answers,
            # and /healthz asks the workers at most once a second.
            deadline = time.monotonic() + 60
            while status != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
                status, body = get_json(f"{stack.url}/healthz")
            assert status == 200, body
            assert all(check["ok"] for check in body["checks"].values())
            for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-init.js"):
                with urllib.request.urlopen(f"{stack.url}/static/ninja/{asset}") as response:
                    assert response.status == 200 and response.read()
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

        # The failed first start must not have used up the one showing of the admin password.
        stack = start_stack(Path(tmp), seed=False)
        try:
            username, password = first_admin(stack.output())
            assert signed_in_page(stack.url, username, password) == f"{stack.url}/w/default/"
        finally:
            stack.stop()
