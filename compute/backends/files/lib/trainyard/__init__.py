"""Trainyard's run helper, shipped into every run: log metrics and tags from a script.

    from trainyard import run
    run.log("loss", 0.31)            # the next step of the "loss" series
    run.log("accuracy", 0.9, step=10)
    run.log_list("lr", [0.1, 0.05, 0.01])
    run.tag("model", "resnet18")

Each call appends one JSON line to the file named by TRAINYARD_METRICS_FILE,
which the run monitor collects while the run runs. Outside Trainyard the
calls print what they would record, so a script runs unchanged anywhere.
"""

import json
import math
import os
import sys
import threading
import time

__all__ = ["run"]


class Run:
    def __init__(self) -> None:
        self.id = os.environ.get("TRAINYARD_RUN_ID")
        self._path = os.environ.get("TRAINYARD_METRICS_FILE")
        self._steps: dict = {}
        self._lock = threading.Lock()

    def _write(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"))
        if not self._path:
            print(f"trainyard: {line}", file=sys.stderr)
            return
        with self._lock, open(self._path, "a") as f:
            f.write(line + "\n")

    def log(self, name: str, value: float, step: int | None = None) -> None:
        """Record `value` as the next step (or step `step`) of the metric series `name`."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"metric {name} must be a finite number, not {value}")
        with self._lock:
            if step is None:
                step = self._steps.get(name, -1) + 1
            self._steps[name] = max(step, self._steps.get(name, -1))
        self._write({"metric": str(name), "value": value, "step": int(step), "time": time.time()})

    def log_list(self, name: str, values) -> None:
        """Record each of `values` as consecutive steps of `name`."""
        for value in values:
            self.log(name, value)

    def tag(self, key: str, value: str = "") -> None:
        """Set a tag on the run (shown on the run page and in run lists)."""
        self._write({"tag": str(key), "value": str(value)})


run = Run()
