"""Azure Batch: a run is a Batch job with one task running the step's command line on a pool.

The step gives the `command` (default: `python3 <entry script> <arguments>`)
and the `pool` (default: the target's pool). The run's files are unpacked
into the task's working directory; the live log is the task's stdout.txt,
stderr.txt its stderr, and `outputs/` in the working directory is collected.
"""

from __future__ import annotations

import shlex

from compute.backends.base import LaunchSpec
from compute.backends.cloud import CloudBackend


class BatchBackend(CloudBackend):
    kind = "batch"
    service = "Azure Batch"

    def submit(self, spec: LaunchSpec, handle: dict, files: dict[str, bytes], step: dict) -> dict:
        command = step.get("command") or shlex.join(["python3", spec.entry_script, *spec.arguments])
        return self.client.submit(
            pool_id=step.get("pool") or self.target.config.get("pool_id", ""),
            job_id=f"trainyard-{spec.run_id}-{handle['attempt']}",
            command_line=command,
            files=files,
            environment={"TRAINYARD_RUN_ID": str(spec.run_id)},
        )

    def submitted_text(self, job: dict) -> str:
        return (
            f"Submitted Batch job {job['job_id']} (task {job['task_id']}) to pool "
            f"{job['pool_id']} of account {self.target.config.get('account_name')}"
        )

    def stderr(self, job: dict, offset: int, finished: bool, state: str) -> bytes:
        return self.client.log(job, offset, name="stderr.txt")
