"""Run the three cloud emulators until interrupted, to attach them by hand in a dev studio.

    .venv/bin/python -m tests.emulators [--root DIR] [--port FIRST_PORT]

Prints what each attach wizard asks for. The credentials are the emulators' own.
"""

import argparse
import signal
import tempfile
import threading
from pathlib import Path

from tests.emulators.batch import BatchEmulator
from tests.emulators.databricks import DatabricksEmulator
from tests.emulators.datalake import DataLakeEmulator


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators")
    parser.add_argument("--root", type=Path, help="where submitted work runs (default: a temp dir)")
    parser.add_argument(
        "--port", type=int, default=0, help="Databricks on PORT, Batch PORT+1, Data Lake PORT+2"
    )
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="trainyard-emulators-"))

    def port(offset: int) -> int:
        return args.port + offset if args.port else 0

    databricks = DatabricksEmulator(root / "databricks").start(port(0))
    batch = BatchEmulator(root / "batch").start(port(1))
    datalake = DataLakeEmulator(root / "datalake").start(port(2))
    print(f"Work directory: {root}")
    print(f"Databricks    workspace URL {databricks.url}  access token {databricks.token}")
    print(
        f"Azure Batch   account URL {batch.url}  account {batch.account_name}  "
        f"key {batch.account_key}  pools {', '.join(batch.pools)}"
    )
    print(
        f"Data Lake     endpoint and authority {datalake.url}  account {datalake.account_name}  "
        f"tenant {datalake.tenant_id}  client {datalake.client_id}  "
        f"secret {datalake.client_secret}"
    )
    print("Ctrl-C stops them.", flush=True)
    stop = threading.Event()
    # Stopping also ends the work still running, on SIGTERM as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for emulator in (databricks, batch, datalake):
            emulator.stop()


if __name__ == "__main__":
    main()
