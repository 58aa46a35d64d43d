"""Median latency of the Home page and the API list endpoints on a running Trainyard (SQLite).

Starts `manage.py up` in a throwaway DATA_DIR, fills a workspace with 40 runs
and 10 compute targets, then times sequential requests over HTTP. The baseline,
timed in the same run against the same server, is the sign-in page: a Django
page that touches no workspace data.

    .venv/bin/python bench/bench_pages.py
"""

import http.cookiejar
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

from tests.services.live_stack import ROOT, start_stack  # noqa: E402

REQUESTS = 200

FILL = """
import django; django.setup()
from django.contrib.auth import get_user_model
from compute.models import ComputeTarget
from runs.models import Experiment, Run
from studio.models import Workspace
ws = Workspace.objects.get(slug=%r)
alice = get_user_model().objects.get(username="alice")
for i in range(10):
    ComputeTarget.objects.create(workspace=ws, name=f"vm{i}", kind="virtualmachine",
                                 state="Succeeded", address=f"host{i}", created_by=alice)
exp = Experiment.objects.create(workspace=ws, name="mnist", created_by=alice)
for i in range(40):
    Run.objects.create(workspace=ws, experiment=exp, number=i + 1, status="Completed",
                       target_name="local", submitted_by=alice)
"""


def timed(opener, url: str, headers: dict | None = None) -> float:
    request = urllib.request.Request(url, headers=headers or {})
    start = time.perf_counter()
    with opener.open(request, timeout=10) as response:
        response.read()
        assert response.status == 200, url
    return (time.perf_counter() - start) * 1000


def median_ms(opener, url: str, headers: dict | None = None) -> float:
    for _ in range(10):
        timed(opener, url, headers)
    return statistics.median(timed(opener, url, headers) for _ in range(REQUESTS))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="ty-bench-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            subprocess.run(
                [sys.executable, "-c", FILL % stack.workspace_slug],
                cwd=ROOT,
                env=stack.env,
                check=True,
            )
            token = stack.manage("create_token", "alice", "--name", "bench").stdout.strip()
            jar = http.cookiejar.CookieJar()
            browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
            page = browser.open(f"{stack.url}/login/").read().decode()
            found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
            assert found, "the sign-in page has no CSRF token"
            csrf = found.group(1)
            form = urllib.parse.urlencode(
                {"username": "alice", "password": stack.password, "csrfmiddlewaretoken": csrf}
            ).encode()
            browser.open(urllib.request.Request(f"{stack.url}/login/", data=form)).read()

            anonymous = urllib.request.build_opener()
            api = {"Authorization": f"Bearer {token}"}
            baseline = median_ms(anonymous, f"{stack.url}/login/")
            results = {
                "Home page": median_ms(browser, f"{stack.url}/w/{stack.workspace_slug}/"),
            }
            ws = f"workspace={stack.workspace_slug}"
            for path in (
                "workspaces",
                f"computes?{ws}",
                f"experiments?{ws}",
                f"runs?{ws}",
                f"pipelines?{ws}",
            ):
                url = f"{stack.url}/api/v1/{path}"
                results[f"GET /api/v1/{path.split('?')[0]}"] = median_ms(anonymous, url, api)
        finally:
            stack.stop()
    print(f"baseline (sign-in page): {baseline:.1f} ms median of {REQUESTS}")
    for name, ms in results.items():
        print(f"{name}: {ms:.1f} ms median, {ms / baseline:.2f}x baseline, target < 50 ms")


if __name__ == "__main__":
    main()
