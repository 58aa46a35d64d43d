"""The chaos soak: 500 short runs on local, a VM and a managed cluster while a loop
kills a random Trainyard process every 20 s.

Starts `manage.py up` (web server, Celery worker and beat, run monitor, embedded
Redis) in a throwaway DATA_DIR, an sshd on a free loopback port for the VM (this
machine over SSH) and a managed cluster on the local Docker engine (scripts/
start-dockerd.sh and scripts/build-node-image.sh first). Runs are submitted and
read through the API only, retried while a process is down. At the end every
run must be Completed, its stored log byte for byte what it printed (SHA-256),
its output collected; the kills and the time until each killed process was back
are reported. A short version (50 runs) is tests/studio/test_chaos.py.

    .venv/bin/python bench/bench_chaos.py [--runs 500] [--kill-every 20]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.services.live_stack import start_stack  # noqa: E402
from tests.services.sshd import SshServer, ensure_test_user, free_port  # noqa: E402
from tests.support.chaos import (  # noqa: E402
    Soak,
    attach_vm,
    create_cluster,
    remove_cluster_containers,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--kill-every", type=float, default=20.0)
    parser.add_argument("--in-flight", type=int, default=4)
    args = parser.parse_args()

    ensure_test_user()
    sshd_dir = Path(tempfile.mkdtemp(prefix="ty-chaos-sshd-"))
    sshd_dir.chmod(0o755)
    server = SshServer(sshd_dir, "127.0.0.1", free_port())
    server.start()
    with tempfile.TemporaryDirectory(prefix="ty-chaos-") as tmp:
        stack = start_stack(Path(tmp))
        try:
            token = stack.manage("create_token", "alice", "--name", "chaos").stdout.strip()
            api = requests.Session()
            api.headers["Authorization"] = f"Bearer {token}"
            api.params = {"workspace": stack.workspace_slug}
            soak = Soak(
                stack,
                api,
                ["local", "chaos-vm", "chaos-cluster"],
                runs=args.runs,
                in_flight=args.in_flight,
                kill_every=args.kill_every,
            )
            attach_vm(soak, server, "chaos-vm")
            create_cluster(soak, "chaos-cluster", max_nodes=2)
            report = soak.run()
        finally:
            stack.stop()
            remove_cluster_containers(stack)
            server.stop()
    print(report.summary())
    for problem in report.problems:
        print("  ", problem)
    sys.exit(1 if report.problems or report.unrecovered else 0)


if __name__ == "__main__":
    main()
