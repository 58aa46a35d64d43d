"""Runs on a live stack (tests/services/live_stack.py) driven as a user would: the API
with a token, and the live log websocket with a signed-in session, as the browser does."""

import asyncio
import base64
import io
import json
import re
import shlex
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import requests
import websockets
from websockets.asyncio.client import connect
from websockets.typing import Origin

from tests.services.live_stack import LiveStack, start_stack

FINAL_STATUSES = ("Completed", "Failed", "Canceled")

# Prints a numbered line every 0.2 s, at least 10, and ends once the file named by its
# argument exists: a fault always lands mid-run.
COUNT = """\
import sys, time
from pathlib import Path
go = Path(sys.argv[1])
count = 0
while count < 10 or not go.exists():
    count += 1
    print(f"line {count}", flush=True)
    time.sleep(0.2)
"""


def stack_started(data_dir: Path, extra_env: dict) -> LiveStack:
    """`start_stack`, tried twice: `manage.py up` gives its web server 30 s to listen, which
    a machine busy with other test stacks sometimes exceeds."""
    try:
        return start_stack(data_dir, extra_env=extra_env)
    except RuntimeError:
        stack = start_stack(data_dir, seed=False, extra_env=extra_env)
    # The first try seeded the database already.
    slug = "from studio.models import Workspace; print(Workspace.objects.get(name='Vision').slug)"
    stack.workspace_slug = stack.manage("shell", "-c", slug).stdout.split()[-1]
    return stack


def wait_until(check: Callable[[], bool], what: str, timeout: float = 120) -> float:
    """Seconds it took for `check` to hold; fails after `timeout`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"waited {timeout} s for {what}"
        time.sleep(0.2)
    return time.monotonic() - start


def api_session(stack: LiveStack) -> requests.Session:
    """alice's API session (a token from `manage.py create_token`)."""
    token = stack.manage("create_token", "alice", "--name", "live").stdout.strip()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.params = {"workspace": stack.workspace_slug}
    return session


def submit_request(stack: LiveStack, api: requests.Session, go: Path) -> requests.Response:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as source:
        source.writestr("train.py", COUNT)
    return api.post(
        f"{stack.url}/api/v1/runs",
        data={
            "experiment": "faults",
            "target": "local",
            "entry_script": "train.py",
            "arguments": shlex.quote(str(go)),
        },
        files={"snapshot": ("source.zip", archive.getvalue(), "application/zip")},
        timeout=60,
    )


def submit(stack: LiveStack, api: requests.Session, go: Path) -> int:
    response = submit_request(stack, api, go)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def run_of(stack: LiveStack, api: requests.Session, run_id: int) -> dict:
    response = api.get(f"{stack.url}/api/v1/runs/{run_id}", timeout=30)
    assert response.ok, response.text
    return response.json()


def has_status(stack: LiveStack, api: requests.Session, run_id: int, *statuses: str) -> bool:
    return run_of(stack, api, run_id)["status"] in statuses


def stored_log(stack: LiveStack, api: requests.Session, run_id: int) -> str:
    response = api.get(
        f"{stack.url}/api/v1/runs/{run_id}/logs",
        params={"stream": "stdout", "offset": "0"},
        timeout=30,
    )
    assert response.ok, response.text
    return response.text


def counted_lines(log: str) -> int:
    """How many lines COUNT printed; fails unless they are 1..n, each once, in order."""
    lines = log.splitlines()
    assert lines == [f"line {i}" for i in range(1, len(lines) + 1)], lines
    return len(lines)


def session_cookie(stack: LiveStack, username: str = "alice") -> str:
    session = requests.Session()
    page = session.get(f"{stack.url}/login/", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    session.post(
        f"{stack.url}/login/",
        data={
            "username": username,
            "password": stack.password,
            "csrfmiddlewaretoken": token.group(1),
        },
        headers={"Referer": f"{stack.url}/login/"},
        timeout=30,
    )
    return session.cookies["sessionid"] or ""


class LogViewer:
    """A live log viewer of one run's stdout in a thread of its own, speaking the
    protocol of docs/websocket.md and reconnecting as the browser's viewer does."""

    def __init__(self, stack: LiveStack, cookie: str, run_id: int) -> None:
        self.url = f"ws://127.0.0.1:{stack.port}/ws/runs/{run_id}/logs/"
        self.headers = {"Cookie": f"sessionid={cookie}"}
        self.origin = Origin(stack.url)
        self.data = b""
        self.connections = 0
        self.statuses = 0
        self.received_at = 0.0
        self.done = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.follow()), daemon=True)
        self.thread.start()

    async def follow(self) -> None:
        while not self.done.is_set():
            try:
                if await self.follow_once():
                    self.done.set()
                    return
            except (OSError, websockets.exceptions.WebSocketException):
                pass
            await asyncio.sleep(0.5)

    async def follow_once(self) -> bool:
        async with connect(self.url, additional_headers=self.headers, origin=self.origin) as ws:
            self.connections += 1
            await ws.send(json.dumps({"type": "follow", "offsets": {"stdout": len(self.data)}}))
            synced = final = False
            async for frame in ws:
                message = json.loads(frame)
                if message["type"] == "log" and message["stream"] == "stdout":
                    chunk = base64.b64decode(message["data"])
                    skip = len(self.data) - message["offset"]
                    if skip < len(chunk):
                        self.data += chunk[max(skip, 0) :]
                        self.received_at = time.monotonic()
                elif message["type"] == "synced":
                    synced = True
                elif message["type"] == "status":
                    self.statuses += 1
                    final = message["final"]
                if synced and final:
                    return True
        return False

    def wait(self, timeout: float) -> str:
        self.thread.join(timeout)
        assert self.done.is_set(), "the viewer did not see the run end"
        return self.data.decode()
