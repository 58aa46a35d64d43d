"""The nodes of the Batch account emulator (tests/emulators/batch.py): its pools, jobs and
tasks, and the scheduler that runs each task as a local process in its own directory, one
task per node at a time, after fetching its resource files."""

from __future__ import annotations

import shlex
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tests.emulators.base import EmulatorServer, LocalProcess


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Pool:
    id: str
    vm_size: str = "standard_d2s_v3"
    dedicated_nodes: int = 2
    low_priority_nodes: int = 0
    created: float = field(default_factory=time.time)

    def as_json(self, base: str) -> dict:
        created = iso(self.created)
        return {
            "id": self.id,
            "url": f"{base}/pools/{self.id}",
            "eTag": f'"0x{int(self.created * 1000):X}"',
            "lastModified": created,
            "creationTime": created,
            "state": "active",
            "stateTransitionTime": created,
            "allocationState": "steady",
            "allocationStateTransitionTime": created,
            "vmSize": self.vm_size,
            "resizeTimeout": "PT15M",
            "currentDedicatedNodes": self.dedicated_nodes,
            "currentLowPriorityNodes": self.low_priority_nodes,
            "targetDedicatedNodes": self.dedicated_nodes,
            "targetLowPriorityNodes": self.low_priority_nodes,
            "enableAutoScale": False,
            "enableInterNodeCommunication": False,
            "taskSlotsPerNode": 1,
            "taskSchedulingPolicy": {"nodeFillType": "Spread"},
            "virtualMachineConfiguration": {
                "imageReference": {
                    "publisher": "canonical",
                    "offer": "0001-com-ubuntu-server-jammy",
                    "sku": "22_04-lts",
                    "version": "latest",
                },
                "nodeAgentSKUId": "batch.node.ubuntu 22.04",
            },
        }


@dataclass
class Task:
    id: str
    job_id: str
    command_line: str
    environment: dict[str, str]
    created: float = field(default_factory=time.time)
    state: str = "active"
    previous_state: str | None = None
    state_time: float = field(default_factory=time.time)
    node_id: str | None = None
    directory: Path | None = None
    process: LocalProcess | None = None
    exit_code: int | None = None
    started: float | None = None
    ended: float | None = None
    failure: dict | None = None
    ready_at: float = 0.0
    resource_files: list[dict] = field(default_factory=list)

    def move(self, state: str) -> None:
        self.previous_state, self.state, self.state_time = self.state, state, time.time()


@dataclass
class Job:
    id: str
    pool_id: str
    created: float = field(default_factory=time.time)
    state: str = "active"
    previous_state: str | None = None
    state_time: float = field(default_factory=time.time)
    ended: float | None = None
    terminate_reason: str | None = None
    on_all_tasks_complete: str = "noaction"
    tasks: dict[str, Task] = field(default_factory=dict)

    def move(self, state: str) -> None:
        self.previous_state, self.state, self.state_time = self.state, state, time.time()


class BatchNodes(EmulatorServer):
    """The scheduler half of the emulator; `BatchEmulator` answers the REST API over it."""

    account_name: str
    pools: dict[str, Pool]
    jobs: dict[str, Job]
    preparing_seconds: float

    def _advance(self) -> None:
        with self.lock:
            now = time.time()
            for job in self.jobs.values():
                pool = self.pools.get(job.pool_id)
                for task in job.tasks.values():
                    if task.state == "running" and task.process:
                        code = task.process.poll()
                        if code is not None:
                            task.exit_code = code
                            task.ended = now
                            if task.process.start_error:
                                task.failure = {
                                    "category": "UserError",
                                    "code": "CommandProgramNotFound",
                                    "message": f"The specified command program is not found: "
                                    f"{task.process.start_error}",
                                }
                            task.move("completed")
                    elif task.state == "preparing" and now >= task.ready_at:
                        self._launch(job, task)
                if job.state == "active" and pool is not None:
                    busy = {
                        t.node_id for t in self._all_tasks() if t.state in ("preparing", "running")
                    }
                    free = [n for n in self._nodes(pool) if n not in busy]
                    for task in job.tasks.values():
                        if task.state == "active" and free:
                            task.node_id = free.pop(0)
                            task.ready_at = now + self.preparing_seconds
                            task.move("preparing")
                if (
                    job.state == "active"
                    and job.on_all_tasks_complete == "terminatejob"
                    and job.tasks
                    and all(t.state == "completed" for t in job.tasks.values())
                ):
                    job.terminate_reason = "AllTasksComplete"
                    job.move("terminating")
                if job.state == "terminating" and all(
                    t.state in ("completed", "active") for t in job.tasks.values()
                ):
                    job.ended = now
                    job.move("completed")

    def _all_tasks(self):
        return [t for j in self.jobs.values() for t in j.tasks.values()]

    def _nodes(self, pool: Pool) -> list[str]:
        count = pool.dedicated_nodes + pool.low_priority_nodes
        return [f"tvmps_{pool.id}_{n:02d}" for n in range(count)]

    def _launch(self, job: Job, task: Task) -> None:
        node_id = task.node_id or ""
        task.directory = self.root / "nodes" / node_id / "workitems" / job.id / "job-1" / task.id
        working = task.directory / "wd"
        working.mkdir(parents=True, exist_ok=True)
        env = {
            "AZ_BATCH_ACCOUNT_NAME": self.account_name,
            "AZ_BATCH_ACCOUNT_URL": self.url,
            "AZ_BATCH_POOL_ID": job.pool_id,
            "AZ_BATCH_NODE_ID": node_id,
            "AZ_BATCH_JOB_ID": job.id,
            "AZ_BATCH_TASK_ID": task.id,
            "AZ_BATCH_TASK_DIR": str(task.directory),
            "AZ_BATCH_TASK_WORKING_DIR": str(working),
            **task.environment,
        }
        task.failure = self._download_resource_files(task, working)
        try:
            argv = shlex.split(task.command_line) if task.failure is None else []
        except ValueError as exc:
            argv = []
            task.failure = {
                "category": "UserError",
                "code": "CommandLineInvalid",
                "message": f"The command line cannot be parsed: {exc}",
            }
        task.started = time.time()
        task.move("running")
        (task.directory / "stdout.txt").touch()
        (task.directory / "stderr.txt").touch()
        if not argv:
            task.exit_code, task.ended = -1, time.time()
            task.move("completed")
            return
        task.process = LocalProcess(
            argv,
            cwd=working,
            stdout_path=task.directory / "stdout.txt",
            stderr_path=task.directory / "stderr.txt",
            env=env,
        )
        task.process.start()

    def _download_resource_files(self, task: Task, working: Path) -> dict | None:
        """Fetch each resource file's httpUrl into the working directory, as a node does
        before it starts the command; the task's failureInfo when one cannot be fetched."""
        for resource in task.resource_files:
            url, name = resource.get("httpUrl", ""), resource.get("filePath", "")
            try:
                with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310
                    content = response.read()
            except (urllib.error.URLError, ValueError) as exc:
                denied = isinstance(exc, urllib.error.HTTPError) and exc.code in (401, 403)
                return {
                    "category": "UserError",
                    "code": "ResourceContainerAccessDenied" if denied else "BlobDownloadMiscError",
                    "message": f"Failed to download resource file {name}: {exc}",
                }
            target = working / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        return None

    def _end_task(self, task: Task, message: str) -> None:
        if task.state == "completed":
            return
        if task.process:
            task.process.kill()
            task.exit_code = task.process.poll()
        task.started = task.started or time.time()
        task.ended = time.time()
        task.failure = {"category": "UserError", "code": "TaskEnded", "message": message}
        task.move("completed")

    def task_directory(self, job_id: str, task_id: str) -> Path | None:
        """Where a task ran on this machine (its wd/ holds what the command wrote)."""
        return self.jobs[job_id].tasks[task_id].directory
