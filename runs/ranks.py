"""The processes of a multi-node run: one per node, called ranks (rank 0 is the driver).

A run's handle is rank 0's, and holds the other ranks' handles under
`workers`, in rank order. Rank 0 writes the run's `stdout`, `stderr` and
`prepare` logs; rank N writes `node-N.stdout` and so on, which the log viewer
offers as "node-N". Every rank gets the environment PyTorch's distributed
launcher and its peers read: MASTER_ADDR and MASTER_PORT (where rank 0
listens), WORLD_SIZE, RANK, NODE_RANK, LOCAL_RANK and LOCAL_WORLD_SIZE.
"""

from __future__ import annotations

from dataclasses import replace

from compute.backends import Handle, Poll, handle_load
from runs.models import Run


def handles(run: Run) -> list[Handle]:
    """Each rank's handle, rank 0 first (none before the run is prepared, or once its
    target is detached)."""
    if run.target is None:
        return []
    handle = handle_load(run.target.kind, run.handle)
    return [] if handle is None else [handle, *handle.workers]


def joined(handles: list[Handle]) -> Handle:
    """The run's handle: rank 0's, with the other ranks' under `workers`."""
    return replace(handles[0], workers=tuple(handles[1:]))


def source(rank: int) -> str:
    """The name of a rank's logs and output folder: "" for the driver, "node-N" for others."""
    return "" if rank == 0 else f"node-{rank}"


def stream_name(rank: int, stream: str) -> str:
    return stream if rank == 0 else f"{source(rank)}.{stream}"


def environments(count: int, master_addr: str, master_port: int) -> list[dict[str, str]]:
    """The distributed-training environment of each of `count` ranks."""
    return [
        {
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "WORLD_SIZE": str(count),
            "RANK": str(rank),
            "NODE_RANK": str(rank),
            "LOCAL_RANK": "0",
            "LOCAL_WORLD_SIZE": "1",
        }
        for rank in range(count)
    ]


def where(rank: int, count: int) -> str:
    """How a message names the rank something happened on ("" for a one-node run)."""
    if count == 1:
        return ""
    return " on the driver node" if rank == 0 else f" on node {rank} of {count}"


def combined(polls: list[Poll]) -> Poll:
    """The state of a run from the polls of its ranks.

    It runs while every rank runs; it ends when all have exited (with the
    first failing rank's code), or as soon as one rank fails or vanishes,
    since the others cannot finish without it.
    """
    if len(polls) == 1:
        return polls[0]
    chunks = {f"{p.rank}.{name}": data for p in polls for name, data in p.chunks.items()}
    failed = [p for p in polls if p.state == "lost" or (p.exit_code or 0) != 0]
    if failed:
        first = failed[0]
        return Poll(first.state, first.exit_code, first.started, chunks, rank=first.rank)
    if all(p.state == "exited" for p in polls):
        return Poll("exited", 0, all(p.started for p in polls), chunks)
    return Poll("running", None, polls[0].started, chunks)
