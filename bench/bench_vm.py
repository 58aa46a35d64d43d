"""Attach and re-check of a loopback VM through a running Trainyard, against plain OpenSSH.

Starts `manage.py up` (real web server, Celery worker and Redis) in a throwaway
DATA_DIR and an sshd on a free loopback port (tests/services/sshd.py; run as
root once so the test user exists). Both operations are timed as a user sees
them: from the request until the API reports the operation finished.

- attach: POST the wizard form, then poll GET /api/v1/computes/<name> every
  10 ms until the state is final; each round attaches a new name.
- re-check: POST /api/v1/computes/<name>/check, then poll the same way. The
  worker runs two processes, each with its own connection pool, so the warm-up
  rounds let both open their pooled connection first.

Baseline, timed in the same run against the same sshd: `ssh -o BatchMode=yes
... true` with OpenSSH, i.e. one full handshake, key login and command.

    .venv/bin/python bench/bench_vm.py
"""

import http.cookiejar
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services.live_stack import start_stack  # noqa: E402
from tests.services.sshd import SshServer, ensure_test_user, free_port  # noqa: E402

ATTACH_ROUNDS = 10
CHECK_ROUNDS = 30
CHECK_WARMUP = 6
BASELINE_ROUNDS = 30


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def openssh_baseline(server: SshServer, key: Path) -> list[float]:
    command = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-i",
        str(key),
        "-p",
        str(server.port),
        f"{server.username}@{server.host}",
        "true",
    ]
    times = []
    for _ in range(BASELINE_ROUNDS):
        start = time.perf_counter()
        subprocess.run(command, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


class Studio:
    def __init__(self, stack, token: str):
        self.stack = stack
        self.api_headers = {"Authorization": f"Bearer {token}"}
        jar = http.cookiejar.CookieJar()
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.csrf = self._csrf(f"{stack.url}/login/")
        self._post_form(f"{stack.url}/login/", {"username": "alice", "password": stack.password})

    def _csrf(self, url: str) -> str:
        page = self.browser.open(url).read().decode()
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert match, f"no CSRF token on {url}"
        return match.group(1)

    def _post_form(self, url: str, fields: dict) -> None:
        body = urllib.parse.urlencode(fields | {"csrfmiddlewaretoken": self.csrf}).encode()
        request = urllib.request.Request(url, data=body, headers={"Referer": url})
        self.browser.open(request).read()

    def api(self, method: str, path: str) -> dict:
        url = f"{self.stack.url}/api/v1/computes{path}?workspace={self.stack.workspace_slug}"
        request = urllib.request.Request(url, method=method, headers=self.api_headers)
        with urllib.request.urlopen(request, timeout=10) as response:  # the bench's own studio  # nosec B310
            return json.loads(response.read() or b"{}")

    def wait_final(self, name: str, after: str | None = None) -> dict:
        """Poll until the latest operation (newer than `after`) has finished."""
        while True:
            target = self.api("GET", f"/{name}")
            operation = target["operation"]
            # The target row is read before its operation: both must show the end.
            finished = operation and operation["started_at"] != after and operation["finished_at"]
            if finished and target["state"] in ("Succeeded", "Failed"):
                return target
            time.sleep(0.01)

    def attach(self, server: SshServer, name: str) -> float:
        url = f"{self.stack.url}/w/{self.stack.workspace_slug}/compute/attach/virtualmachine/"
        self.csrf = self._csrf(url)
        start = time.perf_counter()
        self._post_form(
            url,
            {
                "name": name,
                "address": server.host,
                "port": server.port,
                "username": server.username,
                "authentication": "password",
                "password": server.password,
            },
        )
        target = self.wait_final(name)
        elapsed = (time.perf_counter() - start) * 1000
        assert target["state"] == "Succeeded", target["error"]
        return elapsed

    def check(self, name: str) -> float:
        before = self.api("GET", f"/{name}")["operation"]["started_at"]
        start = time.perf_counter()
        self.api("POST", f"/{name}/check")
        target = self.wait_final(name, after=before)
        elapsed = (time.perf_counter() - start) * 1000
        assert target["state"] == "Succeeded", target["error"]
        return elapsed


def main() -> None:
    ensure_test_user()
    with tempfile.TemporaryDirectory(prefix="ty-bench-vm-") as tmp:
        tmp_path = Path(tmp)
        tmp_path.chmod(0o755)  # sshd reads authorized_keys below it as the test user
        server_dir = tmp_path / "sshd"
        server_dir.mkdir()
        server = SshServer(server_dir, "127.0.0.1", free_port())
        server.start()
        key = tmp_path / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        server.authorize(Path(f"{key}.pub").read_text())
        stack_dir = tmp_path / "stack"
        stack_dir.mkdir()
        stack = start_stack(stack_dir)
        try:
            token = stack.manage("create_token", "alice", "--name", "bench").stdout.strip()
            studio = Studio(stack, token)
            baseline = openssh_baseline(server, key)
            attach = [studio.attach(server, f"bench-{i}") for i in range(ATTACH_ROUNDS)]
            for _ in range(CHECK_WARMUP):
                studio.check("bench-0")
            check = [studio.check("bench-0") for _ in range(CHECK_ROUNDS)]
        finally:
            stack.stop()
            server.stop()

    base = statistics.median(baseline)
    rows = [
        ("`ssh -o BatchMode=yes … true`, OpenSSH (baseline)", baseline, "—"),
        ("attach: form submitted → Succeeded", attach, "< 3 s"),
        ("re-check over the pooled connection → Succeeded", check, "< 0.5 s"),
    ]
    print("| case | median | p90 | vs baseline | target |")
    print("|---|---|---|---|---|")
    for name, times, target in rows:
        median = statistics.median(times)
        print(
            f"| {name} | {median:.1f} ms | {percentile(times, 0.9):.1f} ms | "
            f"{median / base:.2f}× | {target} |"
        )


if __name__ == "__main__":
    main()
