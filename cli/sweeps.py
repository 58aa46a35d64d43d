"""Sweeps: `run submit-hyperdrive`, following the children until the sweep ends, and the
children table of `run show`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cli import output
from cli.connection import PROG, Api
from cli.context import Context
from cli.project import hdconfig_find, project_folders

POLL_SECONDS = 2
FINAL_STATUSES = ("Completed", "Failed", "Canceled")
SWEEP_DETAILS = (
    "id",
    "experiment",
    "number",
    "status",
    "error",
    "target",
    "entry_script",
    "sampling",
    "seed",
    "primary_metric_name",
    "primary_metric_goal",
    "max_total_runs",
    "max_concurrent_runs",
    "best_child",
    "submitted_by",
    "created_at",
    "ended_at",
    "url",
)
CHILD_COLUMNS = (
    ("RUN", "run_id"),
    ("#", "number"),
    ("STATUS", "status"),
    ("HYPERPARAMETERS", "sampled"),
)


def run_submit_hyperdrive(ctx: Context) -> int:
    folders = project_folders(Path(ctx.args.source_directory))
    hdconfig = hdconfig_find(ctx.args.hyperdrive_config, folders)
    sweep = ctx.submit_folder(
        "/sweeps", [("hyperdrive_config", (hdconfig.name, hdconfig.read_bytes(), "text/yaml"))]
    )
    if ctx.args.no_wait:
        print(sweep["id"])
        return 0
    print(
        f"Sweep {sweep['id']} ({sweep['experiment']} #{sweep['number']}) of "
        f"{sweep['max_total_runs']} run(s) on {sweep['target']}: {ctx.api.url}{sweep['url']}",
        file=sys.stderr,
    )
    return sweep_wait(ctx.api, sweep["id"])


def sweep_wait(api: Api, sweep_id: int) -> int:
    """One line per change of a child's status or primary metric, then the best child;
    0 once the sweep Completed, 1 if it ended otherwise."""
    seen: dict[int, tuple] = {}
    try:
        while True:
            sweep = api.get(f"/sweeps/{sweep_id}")
            for child in sweep["children"]:
                state = (child["status"], child["primary_metric"])
                if seen.get(child["run_id"]) != state:
                    seen[child["run_id"]] = state
                    print(child_line(child, sweep["primary_metric_name"]), flush=True)
            if sweep["status"] in FINAL_STATUSES:
                break
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        print(
            f"\nStopped watching; sweep {sweep_id} goes on. See it with "
            f"`{PROG} run show --run {sweep_id}`.",
            file=sys.stderr,
        )
        return 130
    print(sweep_summary(sweep))
    return 0 if sweep["status"] == "Completed" else 1


def sampled(child: dict) -> str:
    return " ".join(f"{name} {value}" for name, value in child["hyperparameters"].items())


def child_line(child: dict, metric: str) -> str:
    line = f"Run {child['run_id']} ({sampled(child)}): {child['status']}"
    if child["primary_metric"] is not None:
        line += f", {metric} {child['primary_metric']}"
    why = child["cancel_reason"] or child["error"]
    return f"{line} ({why})" if why and child["status"] in FINAL_STATUSES else line


def sweep_summary(sweep: dict) -> str:
    error = sweep["error"].rstrip(".")
    ended = f"Sweep {sweep['id']} {sweep['status']}{': ' if error else ''}{error}"
    best = next((c for c in sweep["children"] if c["best"]), None)
    metric = sweep["primary_metric_name"]
    if best is None:
        return f"{ended}. No child logged {metric}."
    return (
        f"{ended}. Best: run {best['run_id']} ({sampled(best)}), {metric} "
        f"{best['primary_metric']} ({sweep['primary_metric_goal'].lower()})."
    )


def sweep_show(api: Api, sweep_id: int) -> None:
    sweep = api.get(f"/sweeps/{sweep_id}")
    output.details(sweep | {"url": f"{api.url}{sweep['url']}"}, SWEEP_DETAILS)
    print()
    children = sweep["children"]
    rows = [c | {"sampled": sampled(c), "marked": "*" if c["best"] else ""} for c in children]
    metric = sweep["primary_metric_name"].upper()
    output.table(rows, (*CHILD_COLUMNS, (metric, "primary_metric"), ("BEST", "marked")))
