"""What one monitor poll of a cloud run costs: status + log read through each client.

Starts the three emulators in this process, runs one job to its end on each,
then times 200 sequential polls (`status(handle)` then `log(handle, offset)`,
what the run monitor does every few seconds per active run). The baseline,
timed in the same run against the same emulator, is one authenticated GET
of the same job with `requests`, so the ratio is the clients' own cost
(official SDK layers, signing, the extra calls each service needs).

    .venv/bin/python bench/bench_cloud.py
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402

from compute.cloud.clients.batch import Batch  # noqa: E402
from compute.cloud.clients.databricks import Databricks  # noqa: E402
from compute.cloud.clients.datalake import DataLakeAnalytics  # noqa: E402
from tests.emulators.batch import BatchEmulator  # noqa: E402
from tests.emulators.databricks import DatabricksEmulator  # noqa: E402
from tests.emulators.datalake import DataLakeEmulator  # noqa: E402

POLLS = 200
SCRIPT = b"for i in range(100):\n    print('epoch', i, 'loss', 1 / (i + 1))\n"
USQL = (
    '@rows = EXTRACT a string FROM "/in.csv" USING Extractors.Csv();\n'
    'OUTPUT @rows TO "/out.csv" USING Outputters.Csv();\n'
)


def median_ms(fn) -> tuple[float, float]:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(POLLS):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)]


def finish(client, handle) -> None:
    deadline = time.monotonic() + 60
    while not client.status(handle)[1]:
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.1)


def poll(client, handle):
    def once():
        client.status(handle)
        client.log(handle, 100)

    return once


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-cloud-"))
    rows = []
    with DatabricksEmulator(root / "databricks") as emulator:
        client = Databricks(workspace_url=emulator.url, token=emulator.token)
        handle = client.submit(
            kind="python",
            entry="train.py",
            files={"train.py": SCRIPT},
            run_name="bench",
            cluster_id=next(iter(emulator.clusters)),
        )
        finish(client, handle)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {emulator.token}"
        url = f"{emulator.url}/api/2.2/jobs/runs/get"
        rows.append(
            (
                "Databricks",
                median_ms(lambda: session.get(url, params={"run_id": handle["run_id"]})),
                median_ms(poll(client, handle)),
            )
        )

    with BatchEmulator(root / "batch") as emulator:
        batch = Batch(
            account_url=emulator.url,
            account_name=emulator.account_name,
            account_key=emulator.account_key,
        )
        handle = batch.submit(
            pool_id="cpu-pool",
            job_id="bench",
            command_line="python3 train.py",
            files={"train.py": SCRIPT},
        )
        finish(batch, handle)
        # The baseline signs nothing: the emulator is asked for a route it rejects before
        # any work, so it measures the bare HTTP round trip.
        session = requests.Session()
        url = f"{emulator.url}/jobs/bench/tasks/main"
        rows.append(
            ("Azure Batch", median_ms(lambda: session.get(url)), median_ms(poll(batch, handle)))
        )

    with DataLakeEmulator(root / "datalake", compile_seconds=0, queued_seconds=0) as emulator:
        adla = DataLakeAnalytics(
            account_name=emulator.account_name,
            tenant_id=emulator.tenant_id,
            client_id=emulator.client_id,
            client_secret=emulator.client_secret,
            endpoint=emulator.url,
            authority_url=emulator.url,
        )
        handle = adla.submit(script=USQL, name="bench")
        finish(adla, handle)
        session = requests.Session()
        token = session.post(
            f"{emulator.url}/{emulator.tenant_id}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": emulator.client_id,
                "client_secret": emulator.client_secret,
            },
        ).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        url = f"{emulator.url}/jobs/{handle['job_id']}"
        rows.append(
            (
                "Data Lake Analytics",
                median_ms(lambda: session.get(url, params={"api-version": "2016-11-01"})),
                median_ms(poll(adla, handle)),
            )
        )

    print("| service | one GET (baseline) | one poll: status + log | vs baseline | target |")
    print("|---|---|---|---|---|")
    for name, (base, _), (poll_median, poll_p90) in rows:
        print(
            f"| {name} | {base:.1f} ms | {poll_median:.1f} ms (p90 {poll_p90:.1f} ms) "
            f"| {poll_median / base:.2f}× | < 50 ms |"
        )


if __name__ == "__main__":
    main()
