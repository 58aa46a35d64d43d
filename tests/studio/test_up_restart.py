"""A run outlives a restart of every Trainyard process.

`manage.py up` is stopped as Ctrl-C stops it while a run prints, then started
again on the same DATA_DIR and database; the run goes on meanwhile on its
target, and the new processes follow it to its end. The runs are submitted,
watched and read through the API with a token from `manage.py create_token`.
"""

import io
import shlex
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests

from tests.services.live_stack import LiveStack, start_stack

pytestmark = pytest.mark.e2e

# Prints while Trainyard is down too, and ends only once the test lets it: the
# restart always lands mid-run, and output printed meanwhile must be stored.
COUNT = """\
import sys, time
from pathlib import Path
go = Path(sys.argv[1])
count = 0
while count < 10 or not go.exists():
    count += 1
    print(f"line {count}", flush=True)
    time.sleep(0.2)
Path("outputs").mkdir(exist_ok=True)
Path("outputs/lines.txt").write_text(str(count))
"""

FINAL_STATUSES = ("Completed", "Failed", "Canceled")


@pytest.fixture
def stack():
    with tempfile.TemporaryDirectory(prefix="ty-restart-") as tmp:
        stack = start_stack(Path(tmp))
        yield stack
        stack.stop()


@pytest.fixture
def api(stack) -> requests.Session:
    """alice's API session; her token is in the database, so it outlives the restart."""
    token = stack.manage("create_token", "alice", "--name", "restart").stdout.strip()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.params = {"workspace": stack.workspace_slug}
    return session


def wait_until(check: Callable[[], bool], what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.5)


def get(stack: LiveStack, api: requests.Session, path: str, **params) -> requests.Response:
    response = api.get(f"{stack.url}/api/v1{path}", params=params, timeout=30)
    assert response.ok, response.text
    return response


def submit(stack: LiveStack, api: requests.Session, target: str, go: Path) -> int:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as source:
        source.writestr("train.py", COUNT)
    response = api.post(
        f"{stack.url}/api/v1/runs",
        data={
            "experiment": "restart",
            "target": target,
            "entry_script": "train.py",
            "arguments": shlex.quote(str(go)),
        },
        files={"snapshot": ("source.zip", archive.getvalue(), "application/zip")},
        timeout=60,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def stored_lines(stack: LiveStack, api: requests.Session, run_id: int) -> list[str]:
    return get(stack, api, f"/runs/{run_id}/logs", stream="stdout", offset=0).text.splitlines()


def run_processes(stack: LiveStack, run_id: int) -> list[psutil.Process]:
    """The processes on this machine that carry the run's mark (the VM is this machine too)."""
    mark = f"{(stack.data_dir / 'instance_id').read_text().strip()}-{run_id}"
    return [
        process
        for process in psutil.process_iter(["environ"])
        if (process.info["environ"] or {}).get("TRAINYARD_RUN_MARK") == mark
    ]


def attach_vm(stack: LiveStack, api: requests.Session, sshd, name: str) -> None:
    response = api.post(
        f"{stack.url}/api/v1/computes/vm",
        json={
            "name": name,
            "address": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "authentication": "password",
            "password": sshd.password,
        },
        timeout=60,
    )
    assert response.status_code == 202, response.text
    wait_until(
        lambda: get(stack, api, f"/computes/{name}").json()["state"] in ("Succeeded", "Failed"),
        f"the check of {name}",
    )
    target = get(stack, api, f"/computes/{name}").json()
    assert target["state"] == "Succeeded", target


def restart_mid_run_then_finish(stack: LiveStack, api: requests.Session, target: str, go: Path):
    """Submit to `target`, restart Trainyard while the run prints, then let the run end."""
    run_id = submit(stack, api, target, go)

    def running_with_output() -> bool:
        status = get(stack, api, f"/runs/{run_id}").json()["status"]
        assert status not in FINAL_STATUSES, status
        return status == "Running" and len(stored_lines(stack, api, run_id)) >= 5

    wait_until(running_with_output, "the run to be Running with output stored")
    before = stored_lines(stack, api, run_id)
    trainyard = psutil.Process(stack.process.pid).children(recursive=True)
    assert stack.stop() == 0
    # Grandchildren (Celery's pool) are reaped by init a moment after their parent.
    _, left = psutil.wait_procs(trainyard, timeout=10)
    assert not left, f"Trainyard processes left running: {left}"
    assert run_processes(stack, run_id), "the run did not outlive Trainyard"

    stack.start_again()
    go.touch()
    wait_until(
        lambda: get(stack, api, f"/runs/{run_id}").json()["status"] in FINAL_STATUSES,
        "the run to end",
    )
    run = get(stack, api, f"/runs/{run_id}").json()
    assert (run["status"], run["exit_code"]) == ("Completed", 0), run
    files = [f["path"] for f in get(stack, api, f"/runs/{run_id}/files").json()]
    assert "outputs/lines.txt" in files
    count = int(get(stack, api, f"/runs/{run_id}/files/outputs/lines.txt").text)
    # Lines printed while Trainyard was down are there too, none twice.
    assert count > len(before)
    assert stored_lines(stack, api, run_id) == [f"line {i}" for i in range(1, count + 1)]
    assert not run_processes(stack, run_id)


def test_a_local_run_survives_a_restart_of_every_trainyard_process(stack, api, shared_dir):
    restart_mid_run_then_finish(stack, api, "local", shared_dir / "go")


def test_a_run_on_an_attached_vm_survives_a_restart_of_every_trainyard_process(
    stack, api, sshd, shared_dir
):
    attach_vm(stack, api, sshd, "restart-vm")
    restart_mid_run_then_finish(stack, api, "restart-vm", shared_dir / "go")
