"""Verbs about experiments, runs and pipelines, and `folder attach`."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO

import requests

from cli import output
from cli.connection import PROG, Api, CliError
from cli.context import Context
from cli.project import project_attach, snapshot_upload
from cli.sweeps import sweep_show

# How often a dropped live log is picked up again at the byte where it stopped.
FOLLOW_RETRIES = 30
RUN_COLUMNS = (
    ("ID", "id"),
    ("EXPERIMENT", "experiment"),
    ("#", "number"),
    ("STATUS", "status"),
    ("TARGET", "target"),
    ("SCRIPT", "entry_script"),
    ("SUBMITTED", "created_at"),
)
RUN_DETAILS = (
    "id",
    "experiment",
    "number",
    "status",
    "status_reason",
    "target",
    "node",
    "node_count",
    "entry_script",
    "arguments",
    "framework",
    "environment",
    "exit_code",
    "error",
    "submitted_by",
    "created_at",
    "started_at",
    "ended_at",
)


def folder_attach(ctx: Context) -> int:
    experiment = ctx.experiment()
    path = project_attach(Path.cwd(), workspace=ctx.workspace, experiment=experiment)
    print(f"Attached this folder to experiment {experiment} in {ctx.workspace} ({path}).")
    return 0


def experiment_create(ctx: Context) -> int:
    created = ctx.api.post("/experiments", params=ctx.params, json={"name": ctx.args.name})
    print(f"Created experiment {created['name']} in {ctx.workspace}.")
    return 0


def experiment_list(ctx: Context) -> int:
    experiments = ctx.api.get("/experiments", **ctx.params)
    if ctx.json:
        output.as_json(experiments)
    else:
        columns = (("NAME", "name"), ("RUNS", "run_count"), ("LATEST", "latest_status"))
        output.table(experiments, columns)
    return 0


def run_submit_script(ctx: Context) -> int:
    run = ctx.submit_folder("/runs")
    if ctx.args.no_wait:
        print(run["id"])
        return 0
    print(
        f"Run {run['id']} ({run['experiment']} #{run['number']}) on {run['target']}: "
        f"{ctx.api.url}{run['url']}",
        file=sys.stderr,
    )
    return run_wait(ctx.api, run["id"])


def run_wait(api: Api, run_id: int) -> int:
    """Show the run's output as it is printed; 0 once it Completed, 1 if it ended otherwise."""
    try:
        streams_print(api, run_id, follow=True)
    except KeyboardInterrupt:
        print(
            f"\nStopped watching; run {run_id} goes on. Stop it with "
            f"`{PROG} run cancel --run {run_id}`.",
            file=sys.stderr,
        )
        return 130
    run = api.get(f"/runs/{run_id}")
    if run["status"] == "Completed":
        print(f"Run {run_id} Completed.", file=sys.stderr)
        return 0
    reason = run["error"] or (f"exit code {run['exit_code']}" if run["exit_code"] else "")
    print(f"Run {run_id} {run['status']}{': ' if reason else ''}{reason}", file=sys.stderr)
    return 1


def streams_print(api: Api, run_id: int, *, follow: bool, stream: str = "") -> None:
    """stdout to stdout and stderr to stderr (or one named stream to stdout), side by side."""
    sinks = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    if stream:
        sinks = {stream: sys.stdout.buffer}
    failures: list[CliError] = []

    def copy(name: str, sink: BinaryIO) -> None:
        try:
            (log_follow if follow else log_read)(api, run_id, name, sink)
        except CliError as exc:
            failures.append(exc)

    readers = [threading.Thread(target=copy, args=item, daemon=True) for item in sinks.items()]
    for reader in readers:
        reader.start()
    for reader in readers:
        # Joined in short steps so Ctrl-C reaches the main thread at once.
        while reader.is_alive():
            reader.join(0.2)
    if failures:
        raise failures[0]


def log_read(api: Api, run_id: int, stream: str, sink: BinaryIO) -> None:
    offset = 0
    while True:
        params = {"stream": stream, "offset": offset}
        response = api.request("GET", f"/runs/{run_id}/logs", params=params)
        sink.write(response.content)
        sink.flush()
        offset = int(response.headers["X-Next-Offset"])
        if not response.content or offset >= int(response.headers["X-Log-Size"]):
            return


def log_follow(api: Api, run_id: int, stream: str, sink: BinaryIO) -> None:
    offset = 0
    for _ in range(FOLLOW_RETRIES):
        params = {"stream": stream, "offset": offset, "follow": 1}
        try:
            response = api.request("GET", f"/runs/{run_id}/logs", params=params, stream=True)
            for chunk in response.iter_content(chunk_size=None):
                sink.write(chunk)
                sink.flush()
                offset += len(chunk)
            return
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            time.sleep(1)
    raise CliError(
        f"The live log of run {run_id} kept breaking off: see it whole with "
        f"`{PROG} run logs --run {run_id}`."
    )


def run_list(ctx: Context) -> int:
    runs = ctx.api.get("/runs", experiment=ctx.experiment(required=False), **ctx.params)
    if ctx.json:
        output.as_json(runs)
    else:
        output.table(runs, RUN_COLUMNS)
    return 0


def run_show(ctx: Context) -> int:
    run = ctx.api.get(f"/runs/{ctx.args.run}")
    if ctx.json:
        output.as_json(ctx.api.get(f"/sweeps/{run['id']}") if run["is_sweep"] else run)
    elif run["is_sweep"]:
        sweep_show(ctx.api, run["id"])
    else:
        output.details(run | {"url": f"{ctx.api.url}{run['url']}"}, (*RUN_DETAILS, "url"))
    return 0


def run_cancel(ctx: Context) -> int:
    run = ctx.api.post(f"/runs/{ctx.args.run}/cancel")
    print(f"Run {run['id']} is {run['status']}.")
    return 0


def run_logs(ctx: Context) -> int:
    try:
        streams_print(ctx.api, ctx.args.run, follow=ctx.args.follow, stream=ctx.args.stream)
    except KeyboardInterrupt:
        return 130
    return 0


def pipeline_submit(ctx: Context) -> int:
    args = ctx.args
    definition = Path(args.definition)
    if not definition.is_file():
        raise CliError(f"{definition} is not a file: give the pipeline's YAML with --definition.")
    files = {
        "definition": (definition.name, definition.read_bytes(), "text/yaml"),
        "snapshot": snapshot_upload(Path(args.source_directory)),
    }
    form = {"experiment": args.experiment or ""}
    pipeline = ctx.api.post("/pipelines", params=ctx.params, data=form, files=files)
    if ctx.json:
        output.as_json(pipeline)
        return 0
    output.details(
        pipeline | {"url": f"{ctx.api.url}{pipeline['url']}"},
        ("id", "name", "experiment", "number", "status", "url"),
    )
    print()
    columns = (("STEP", "name"), ("TYPE", "type"), ("RUN", "run_id"), ("COMPUTE", "compute"))
    output.table(pipeline["steps"], columns)
    return 0
