"""The Python client in docs/websocket.md, run as written against `manage.py up` and a real run."""

import re
import subprocess
import sys

import pytest
import requests

from tests.runs.logs.test_live_logs_runs import submit_run
from tests.services.live_stack import ROOT

pytestmark = pytest.mark.e2e

# Output, then a quiet spell longer than the channel layer's 5 s wait, then more.
SCRIPT = """\
import time
for i in range(1, 51):
    print(f"line {i}", flush=True)
time.sleep(7)
print("after a quiet spell", flush=True)
"""
OUTPUT = "".join(f"line {i}\n" for i in range(1, 51)) + "after a quiet spell\n"


def documented_client() -> str:
    text = (ROOT / "docs" / "websocket.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def signed_in(stack, username: str) -> str:
    """The session cookie a sign-in at /login/ sets, as the document says to get it."""
    http = requests.Session()
    form = http.get(f"{stack.url}/login/", timeout=30).text
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert found, form
    token = found.group(1)
    http.post(
        f"{stack.url}/login/",
        data={"username": username, "password": stack.password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{stack.url}/login/"},
        timeout=30,
    )
    session = http.cookies.get("sessionid")
    assert session, "signing in set no session cookie"
    return session


def follow(stack, session: str, run_id: int, *offset: int) -> subprocess.CompletedProcess:
    env = {"TRAINYARD_URL": stack.url, "TRAINYARD_SESSION": session, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", documented_client(), str(run_id), *map(str, offset)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_documented_client_prints_a_run_once_and_its_final_status(live_stack, tmp_path):
    stack = live_stack
    run_id = submit_run(stack, tmp_path, "local", SCRIPT)
    session = signed_in(stack, "alice")

    live = follow(stack, session, run_id)
    assert live.returncode == 0, live.stderr
    assert live.stdout == OUTPUT + "Completed\n"

    # Afterwards, from an offset: the rest of the output, once.
    finished = follow(stack, session, run_id, len("line 1\nline 2\n"))
    assert finished.stdout == OUTPUT[len("line 1\nline 2\n") :] + "Completed\n"


def test_the_documented_client_stops_with_a_message_for_a_stranger(live_stack, tmp_path):
    run_id = submit_run(live_stack, tmp_path, "local", 'print("private")\n')
    refused = follow(live_stack, signed_in(live_stack, "charlie"), run_id)
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr == "Not allowed: sign in as a member of the run's workspace.\n"
