"""Live logs: latency from print() on the target to the line in a websocket client, throughput,
many runs at once, and how fast a 100 MB finished log opens.

Starts `manage.py up` in a throwaway DATA_DIR (its own Celery worker and run
monitor) and an sshd for the SSH target, submits real runs with the service
the form and the API use, and reads their output over `/ws/runs/<id>/logs/`
as the browser does. Baselines are measured in the same run: a bare
`ssh HOST tail -F FILE` of the same output (the floor for the SSH path) and
downloading the whole finished log (what a viewer without tail-first pays).

    .venv/bin/python bench/bench_logs.py [--concurrent 100] [--throughput-mb 100]
"""

import argparse
import asyncio
import hashlib
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services.live_stack import ROOT, start_stack  # noqa: E402
from tests.services.sshd import SshServer, ensure_test_user, free_port  # noqa: E402
from tests.support.viewer import Viewer, session_cookie  # noqa: E402

SUBMIT = """
import sys
from pathlib import Path
import django; django.setup()
from django.contrib.auth import get_user_model
from compute.models import ComputeTarget
from studio.models import Workspace
from tests.support.runs import submit
slug, target_name, source, count = sys.argv[1:]
ws = Workspace.objects.get(slug=slug)
alice = get_user_model().objects.get(username="alice")
target = ComputeTarget.objects.get(workspace=ws, name=target_name)
for _ in range(int(count)):
    run = submit(workspace=ws, user=alice, target=target, source=Path(source), experiment="bench")
    print(run.pk, flush=True)
"""

ATTACH_VM = """
import sys
import django; django.setup()
from django.contrib.auth import get_user_model
from compute.models import AuthMethod, ComputeKind, ComputeState, ComputeTarget
from studio.models import Workspace
slug, host, port, username, password, fingerprint = sys.argv[1:]
ComputeTarget.objects.create(
    workspace=Workspace.objects.get(slug=slug), name="bench-vm", kind=ComputeKind.VM,
    state=ComputeState.SUCCEEDED, address=host, port=int(port), username=username,
    auth_method=AuthMethod.PASSWORD, password=password, host_key_fingerprint=fingerprint,
    created_by=get_user_model().objects.get(username="alice"))
"""

FINISHED_LOG = """
import sys
import django; django.setup()
from django.contrib.auth import get_user_model
from runs.logs import store as logstore
from runs.models import Experiment, Run
from studio.models import Workspace
ws = Workspace.objects.get(slug=sys.argv[1])
alice = get_user_model().objects.get(username="alice")
experiment, _ = Experiment.objects.get_or_create(workspace=ws, name="big", created_by=alice)
run = Run.objects.create(workspace=ws, experiment=experiment, number=1, status="Completed",
                         target_name="local", submitted_by=alice)
line = b"." * 100
block = b"".join(b"%08d " % n + line + b"\\n" for n in range(10000))
offset = 0
while offset < int(sys.argv[2]):
    offset = logstore.append(run.pk, "stdout", offset, block)
print(run.pk, offset)
"""

# The monitor's part done by one process: store a timed line for each run 10 times a
# second, wake its viewers. What remains is the websocket side alone.
FEED = """
import sys, time
import django; django.setup()
from django.contrib.auth import get_user_model
from runs.logs import live
from runs.logs import store as logstore
from runs.models import Experiment, Run
from studio.models import Workspace
slug, runs, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ws = Workspace.objects.get(slug=slug)
alice = get_user_model().objects.get(username="alice")
experiment, _ = Experiment.objects.get_or_create(workspace=ws, name="fed", created_by=alice)
ids = [Run.objects.create(workspace=ws, experiment=experiment, number=n + 1, status="Running",
                          target_name="local", submitted_by=alice).pk for n in range(runs)]
print(" ".join(map(str, ids)), flush=True)
sys.stdin.readline()
for i in range(seconds * 10):
    tick = time.monotonic()
    for run_id in ids:
        data = f"{i} {time.time():.6f}\\n".encode()
        offset = logstore.size(run_id, "stdout")
        logstore.append(run_id, "stdout", offset, data)
        live.notify_log(run_id, "stdout", offset, data)
    time.sleep(max(0, 0.1 - (time.monotonic() - tick)))
Run.objects.filter(pk__in=ids).update(status="Completed")
for run_id in ids:
    live.notify_status(run_id, "Completed")
time.sleep(1)
"""

# Each line carries the wall-clock time it was printed (the target is this machine).
TIMED = """\
import time
for i in range({lines}):
    print(f"{{i}} {{time.time():.6f}}", flush=True)
    time.sleep({pause})
"""

FLOOD = """\
import sys
block = bytes(range(32, 127)) * 689 + b"\\n"
for _ in range({blocks}):
    sys.stdout.buffer.write(block)
sys.stdout.flush()
"""
# The concurrent runs start one after another (two Celery worker slots launch
# them); latency is judged from each run's 20th second on.
STEADY_AFTER_LINE = 200
FLOOD_BLOCK = bytes(range(32, 127)) * 689 + b"\n"


def python(stack, code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done.stdout


def submit(stack, target: str, script: str, count: int = 1) -> list[int]:
    source = Path(tempfile.mkdtemp(prefix="ty-bench-src-"))
    (source / "train.py").write_text(script)
    out = python(stack, SUBMIT, stack.workspace_slug, target, str(source), str(count))
    return [int(line) for line in out.split()]


def timed_latencies(data: bytes, carry: list, now: float, into: list) -> None:
    text = carry[0] + data
    *lines, carry[0] = text.split(b"\n")
    for line in lines:
        index, printed = line.split()
        into.append((int(index), now - float(printed)))


async def latencies_of(stack, cookie: str, run_ids: list[int]) -> list[tuple[int, float]]:
    """(line number, seconds from print to arrival) of every line of the runs' stdout."""
    results: list[tuple[int, float]] = []

    async def one(run_id: int) -> None:
        carry = [b""]

        def on_bytes(stream, data):
            if stream == "stdout":
                timed_latencies(data, carry, time.time(), results)

        await Viewer(stack, cookie, run_id).follow({"stdout": 0}, on_bytes)

    await asyncio.gather(*(one(r) for r in run_ids))
    return results


def percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def ssh_floor(server: SshServer, key: Path, lines: int, pause: float) -> list[float]:
    """`ssh HOST tail -F FILE` of the same timed output, written on the same machine."""
    folder = Path(tempfile.mkdtemp(prefix="ty-bench-floor-"))
    folder.chmod(0o755)
    path = folder / "out.log"
    path.touch()
    path.chmod(0o644)
    tail = subprocess.Popen(
        [
            "ssh",
            "-i",
            str(key),
            "-p",
            str(server.port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            f"{server.username}@{server.host}",
            f"tail -n +1 -F {path}",
        ],
        stdout=subprocess.PIPE,
    )
    time.sleep(1.0)
    writer = subprocess.Popen(
        [sys.executable, "-c", TIMED.format(lines=lines, pause=pause)],
        stdout=open(path, "wb"),  # noqa: SIM115 - the child writes to it
    )
    result = []
    assert tail.stdout is not None
    for _ in range(lines):
        line = tail.stdout.readline()
        result.append(time.time() - float(line.split()[1]))
    writer.wait()
    tail.kill()
    return result


def run_latency(stack, cookie: str, target: str, lines: int, pause: float) -> list[float]:
    (run_id,) = submit(stack, target, TIMED.format(lines=lines, pause=pause))
    return [latency for _, latency in asyncio.run(latencies_of(stack, cookie, [run_id]))]


def run_throughput(stack, cookie: str, megabytes: int) -> dict:
    blocks = megabytes * 1024 * 1024 // len(FLOOD_BLOCK)
    expected = hashlib.sha256(FLOOD_BLOCK * blocks).hexdigest()
    (run_id,) = submit(stack, "local", FLOOD.format(blocks=blocks))
    digest = hashlib.sha256()
    got = {"bytes": 0, "first": 0.0, "last": 0.0}

    def on_bytes(stream, data):
        if stream != "stdout":
            return
        got["first"] = got["first"] or time.monotonic()
        got["last"] = time.monotonic()
        got["bytes"] += len(data)
        digest.update(data)

    asyncio.run(Viewer(stack, cookie, run_id).follow({"stdout": 0}, on_bytes))
    seconds = got["last"] - got["first"]
    stored = Path(stack.data_dir, "logs", str(run_id), "stdout.log").stat().st_size
    return {
        "bytes": got["bytes"],
        "stored": stored,
        "exact": digest.hexdigest() == expected and stored == got["bytes"],
        "mb_per_s": got["bytes"] / 1024 / 1024 / seconds,
    }


def role_of(process: psutil.Process) -> str:
    """Which part of `manage.py up` a child process is."""
    argv = " ".join(process.cmdline())
    for role in ("daphne", "worker", "beat", "monitor", "redis"):
        if role in argv:
            return role
    return argv


def run_concurrent(stack, cookie: str, runs: int, seconds: int) -> dict:
    run_ids = submit(stack, "local", TIMED.format(lines=seconds * 10, pause=0.1), count=runs)
    parts = {role_of(p): p for p in psutil.Process(stack.process.pid).children()}
    cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in parts.items()}
    started = time.monotonic()
    lines = asyncio.run(latencies_of(stack, cookie, run_ids))
    wall = time.monotonic() - started
    cores = {name: (sum(p.cpu_times()[:2]) - cpu_before[name]) / wall for name, p in parts.items()}
    return {
        "all": [latency for _, latency in lines],
        # Lines printed once every run had been launched and followed for a while.
        "steady": [latency for index, latency in lines if index >= STEADY_AFTER_LINE],
        "cores": cores,
    }


def fed_concurrent(stack, cookie: str, runs: int, seconds: int) -> tuple[list[float], dict]:
    feeder = subprocess.Popen(
        [sys.executable, "-c", FEED, stack.workspace_slug, str(runs), str(seconds)],
        cwd=ROOT,
        env=stack.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert feeder.stdin is not None and feeder.stdout is not None
    feeder_in = feeder.stdin
    run_ids = [int(r) for r in feeder.stdout.readline().split()]

    async def watch() -> list[tuple[int, float]]:
        viewers = asyncio.ensure_future(latencies_of(stack, cookie, run_ids))
        await asyncio.sleep(3)
        feeder_in.write("go\n")
        feeder_in.flush()
        return await viewers

    parts = {role_of(p): p for p in psutil.Process(stack.process.pid).children()}
    parts.update(feeder=psutil.Process(feeder.pid), client=psutil.Process())
    cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in parts.items()}
    started = time.monotonic()
    lines = asyncio.run(watch())
    wall = time.monotonic() - started
    cores = {name: (sum(p.cpu_times()[:2]) - cpu_before[name]) / wall for name, p in parts.items()}
    feeder.wait(timeout=120)
    return [latency for _, latency in lines], cores


def finished_log_load(stack, cookie: str, megabytes: int) -> dict:
    out = python(stack, FINISHED_LOG, stack.workspace_slug, str(megabytes << 20))
    run_id, size = map(int, out.split())
    tail_bytes = 256 * 1024

    def tail_first() -> float:
        start = time.perf_counter()
        asyncio.run(
            Viewer(stack, cookie, run_id).follow({"stdout": size - tail_bytes}, lambda s, d: None)
        )
        return time.perf_counter() - start

    def whole() -> float:
        start = time.perf_counter()
        request = urllib.request.Request(
            f"{stack.url}/w/{stack.workspace_slug}/runs/{run_id}/logs/stdout/download/",
            headers={"Cookie": f"sessionid={cookie}"},
        )
        with urllib.request.urlopen(request, timeout=300) as response:  # the bench's own studio  # nosec B310
            while response.read(1 << 20):
                pass
        return time.perf_counter() - start

    def in_browser() -> float:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            context = browser.new_context()
            context.add_cookies([{"name": "sessionid", "value": cookie, "url": stack.url}])
            page = context.new_page()
            start = time.perf_counter()
            page.goto(f"{stack.url}/w/{stack.workspace_slug}/runs/{run_id}/logs/")
            page.get_by_text("Run Completed: complete log loaded.").wait_for(timeout=120_000)
            elapsed = time.perf_counter() - start
            browser.close()
        return elapsed

    return {
        "size": size,
        "tail_ws": statistics.median(tail_first() for _ in range(5)),
        "browser": statistics.median(in_browser() for _ in range(3)),
        "whole": statistics.median(whole() for _ in range(3)),
    }


def start_sshd() -> tuple[SshServer, Path]:
    ensure_test_user()
    base = Path(tempfile.mkdtemp(prefix="ty-bench-sshd-"))
    base.chmod(0o755)
    server = SshServer(Path(tempfile.mkdtemp(dir=base)), "127.0.0.1", free_port())
    server.start()
    key = base / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    server.authorize((base / "id_ed25519.pub").read_text().strip())
    return server, key


def latency_table(stack, cookie: str, server: SshServer, key: Path, lines: int) -> None:
    rows = []
    floor = ssh_floor(server, key, lines, 0.05)
    rows.append(("`ssh HOST tail -F FILE` (floor)", *percentiles(floor)))
    local = run_latency(stack, cookie, "local", lines, 0.05)
    rows.append(("local target → websocket", *percentiles(local)))
    remote = run_latency(stack, cookie, "bench-vm", lines, 0.05)
    rows.append(("SSH target → websocket", *percentiles(remote)))
    print("\n| path | median | p95 | p95 vs floor |\n|---|---|---|---|")
    for name, median, p95 in rows:
        ratio = p95 / rows[0][2]
        print(f"| {name} | {median * 1000:.0f} ms | {p95 * 1000:.0f} ms | {ratio:.0f}× |")


def throughput_line(stack, cookie: str, megabytes: int) -> None:
    flood = run_throughput(stack, cookie, megabytes)
    print(
        f"\nThroughput, one local run printing {flood['bytes'] / 1048576:.0f} MB as fast "
        f"as it can: {flood['mb_per_s']:.1f} MB/s stored and streamed to the websocket; "
        f"every byte exactly once: {flood['exact']}"
    )


def concurrent_line(stack, cookie: str, runs: int, seconds: int) -> None:
    many = run_concurrent(stack, cookie, runs, seconds)
    median, p95 = percentiles(many["steady"])
    all_median, all_p95 = percentiles(many["all"])
    cores = ", ".join(f"{name} {used:.2f}" for name, used in sorted(many["cores"].items()))
    print(
        f"\n{runs} concurrent local runs at 10 lines/s for {seconds} s, one websocket each: "
        f"from each run's 20th second median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
        f"({len(many['steady'])} lines); all lines incl. start-up median "
        f"{all_median * 1000:.0f} ms, p95 {all_p95 * 1000:.0f} ms. CPU cores used: {cores}"
    )


def fed_line(stack, cookie: str, runs: int, seconds: int) -> None:
    latencies, cores = fed_concurrent(stack, cookie, runs, seconds)
    median, p95 = percentiles(latencies)
    used = ", ".join(f"{name} {n:.2f}" for name, n in sorted(cores.items()))
    print(
        f"\n{runs} runs fed at 10 lines/s for {seconds} s by one process storing and waking "
        f"(no monitor), one websocket each: median {median * 1000:.0f} ms, "
        f"p95 {p95 * 1000:.0f} ms. CPU cores used: {used}"
    )


def finished_line(stack, cookie: str, megabytes: int) -> None:
    big = finished_log_load(stack, cookie, megabytes)
    print(
        f"\nFinished {big['size'] / 1048576:.0f} MB log: its tail over the websocket "
        f"{big['tail_ws'] * 1000:.0f} ms, downloading it whole (baseline) "
        f"{big['whole'] * 1000:.0f} ms ({big['whole'] / big['tail_ws']:.0f}× longer); "
        f"the run's log page in Chromium until 'complete log loaded' "
        f"{big['browser'] * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--concurrent", type=int, default=100)
    parser.add_argument("--concurrent-seconds", type=int, default=60)
    parser.add_argument("--throughput-mb", type=int, default=100)
    parser.add_argument("--finished-mb", type=int, default=100)
    parser.add_argument("--parts", default="latency,throughput,concurrent,fed,finished")
    args = parser.parse_args()
    parts = args.parts.split(",")

    server, key = start_sshd()
    with tempfile.TemporaryDirectory(prefix="ty-bench-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            cookie = session_cookie(stack)
            python(
                stack,
                ATTACH_VM,
                stack.workspace_slug,
                server.host,
                str(server.port),
                server.username,
                server.password,
                server.host_key_fingerprint,
            )
            if "latency" in parts:
                latency_table(stack, cookie, server, key, args.lines)
            if "throughput" in parts:
                throughput_line(stack, cookie, args.throughput_mb)
            if "concurrent" in parts:
                concurrent_line(stack, cookie, args.concurrent, args.concurrent_seconds)
            if "fed" in parts:
                fed_line(stack, cookie, args.concurrent, args.concurrent_seconds)
            if "finished" in parts:
                finished_line(stack, cookie, args.finished_mb)
        finally:
            stack.stop()
            server.stop()


if __name__ == "__main__":
    main()
