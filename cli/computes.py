"""Verbs about compute targets: list, show, attach remote / hdinsight, create amlcompute, detach."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cli import output
from cli.connection import CliError
from cli.context import Context

BUSY_STATES = ("Creating", "Updating")
POLL_SECONDS = 1
COMPUTE_COLUMNS = (
    ("NAME", "name"),
    ("KIND", "kind"),
    ("STATE", "state"),
    ("ADDRESS", "address"),
    ("SIZE", "vm_size"),
    ("NODES", "current_nodes"),
)
COMPUTE_DETAILS = (
    "name",
    "kind",
    "state",
    "error",
    "warnings",
    "address",
    "port",
    "username",
    "auth_method",
    "host_key_fingerprint",
    "spark_master",
    "vm_size",
    "vm_priority",
    "min_nodes",
    "max_nodes",
    "idle_seconds_before_scaledown",
    "current_nodes",
    "target_nodes",
    "scaling",
    "created_by",
    "created_at",
    "checked_at",
    "facts",
)
NODE_COLUMNS = (("NODE", "name"), ("STATE", "state"), ("RUN", "run_id"), ("ENGINE", "engine"))


def computetarget_list(ctx: Context) -> int:
    targets = ctx.api.get("/computes", **ctx.params)
    if ctx.json:
        output.as_json(targets)
    else:
        output.table(targets, COMPUTE_COLUMNS)
    return 0


def computetarget_show(ctx: Context) -> int:
    compute_print(ctx, ctx.api.get(f"/computes/{ctx.args.name}", **ctx.params))
    return 0


def compute_print(ctx: Context, target: dict) -> None:
    if ctx.json:
        output.as_json(target)
        return
    output.details(target, COMPUTE_DETAILS)
    failed = [s for s in (target.get("operation") or {}).get("steps", []) if s["state"] == "failed"]
    for step in failed:
        print(f"failed step  {step['label']}: {step['detail']}")
    if target.get("nodes"):
        print()
        output.table(target["nodes"], NODE_COLUMNS)


def credentials(args: argparse.Namespace) -> dict:
    """The login the target is attached with: a password, or a private key read from a file."""
    if args.password:
        return {"authentication": "password", "password": args.password}
    path = Path(args.private_key_file).expanduser()
    try:
        key = path.read_text()
    except OSError as exc:
        raise CliError(
            f"Cannot read the private key {path}: {exc.strerror}. Give --private-key-file "
            "the path of the key whose public half is in the machine's ~/.ssh/authorized_keys."
        ) from None
    return {"authentication": "key", "private_key": key, "passphrase": args.passphrase or ""}


def computetarget_attach_remote(ctx: Context) -> int:
    return attach(ctx, "/computes/vm", {})


def computetarget_attach_hdinsight(ctx: Context) -> int:
    return attach(ctx, "/computes/hdinsight", {"spark_master": ctx.args.spark_master or ""})


def attach(ctx: Context, path: str, extra: dict) -> int:
    args = ctx.args
    payload = {
        "name": args.name,
        "address": args.address,
        "port": args.ssh_port,
        "username": args.username,
        **credentials(args),
        **extra,
    }
    target = ctx.api.post(path, params=ctx.params, json=payload)
    return compute_settled(ctx, target)


def computetarget_create_amlcompute(ctx: Context) -> int:
    args = ctx.args
    payload = {
        "name": args.name,
        "vm_size": args.vm_size,
        "max_nodes": args.max_nodes,
        "min_nodes": args.min_nodes,
        "idle_seconds_before_scaledown": args.idle_seconds_before_scaledown,
        "vm_priority": args.vm_priority,
    }
    target = ctx.api.post("/computes/cluster", params=ctx.params, json=payload)
    return compute_settled(ctx, target)


def compute_settled(ctx: Context, target: dict) -> int:
    """Wait (unless --no-wait) until the target is checked or created; 0 if it Succeeded."""
    if not ctx.args.no_wait:
        print(f"{target['name']} is {target['state']}…", file=sys.stderr)
        while target["state"] in BUSY_STATES:
            time.sleep(POLL_SECONDS)
            target = ctx.api.get(f"/computes/{target['name']}", **ctx.params)
    compute_print(ctx, target)
    return 1 if target["state"] == "Failed" else 0


def computetarget_detach(ctx: Context) -> int:
    name = ctx.args.name
    response = ctx.api.delete(f"/computes/{name}", **ctx.params)
    if response.status_code == 204:
        print(f"Detached {name}.")
    else:
        print(f"Deleting the cluster {name}: its nodes are being removed.")
    return 0
