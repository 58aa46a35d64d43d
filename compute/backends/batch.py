"""Azure Batch: a run is a Batch job with one task running the step's command line on a pool.

The step gives the `command` (default: `python3 <entry script> <arguments>`)
and the `pool` (default: the target's pool). The run's files land in the
task's working directory: with STUDIO_URL set, the node downloads each one as
a resource file from a signed link to the studio that expires after
BATCH_FILE_LINK_HOURS; else they travel inside the task. The live log is the
task's stdout.txt, stderr.txt its stderr, and `outputs/` in the working
directory is collected.
"""

from __future__ import annotations

import shlex
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.urls import reverse

from compute.backends.base import CloudHandle, LaunchSpec
from compute.backends.cloud import CloudBackend
from compute.cloud.clients import FAILED

_LINK_SALT = "trainyard.batch-file"
# How the service says a node could not fetch a task's resource files.
DOWNLOAD_FAILURES = (
    "ResourceContainerAccessDenied",
    "BlobDownloadMiscError",
    "BlobDownloadTimedOut",
)


def file_link(sha: str) -> str:
    """A link through which a Batch node downloads the stored file `sha`, until it expires."""
    token = signing.TimestampSigner(salt=_LINK_SALT).sign(sha)
    return settings.STUDIO_URL + reverse("api:batch_file", args=[token])


def linked_file(token: str) -> str | None:
    """The stored file a link made by `file_link` names; None once expired or if forged."""
    try:
        return signing.TimestampSigner(salt=_LINK_SALT).unsign(
            token, max_age=timedelta(hours=settings.BATCH_FILE_LINK_HOURS)
        )
    except signing.BadSignature:
        return None


class BatchBackend(CloudBackend):
    service = "Azure Batch"

    def submit(self, spec: LaunchSpec, handle: CloudHandle, step: dict[str, Any]) -> dict:
        command = step.get("command") or shlex.join(["python3", spec.entry_script, *spec.arguments])
        links = (
            {path: file_link(sha) for path, sha, _size, _x in spec.manifest}
            if settings.STUDIO_URL
            else {}
        )
        return self.client.submit(
            pool_id=step.get("pool") or self.target.config.get("pool_id", ""),
            job_id=f"trainyard-{spec.run_id}-{handle.attempt}",
            command_line=command,
            files={} if links else self.run_files(spec),
            links=links,
            environment={"TRAINYARD_RUN_ID": str(spec.run_id)},
        )

    def submitted_text(self, job: dict) -> str:
        return (
            f"Submitted Batch job {job['job_id']} (task {job['task_id']}) to pool "
            f"{job['pool_id']} of account {self.target.config.get('account_name')}"
        )

    def stderr(self, job: dict, offset: int, finished: bool, state: str, result: dict) -> bytes:
        written = self.client.log(job, offset, name="stderr.txt")
        if written or offset or state != FAILED or not result.get("message"):
            return written
        # A task that failed before its command ran wrote no stderr: the reason is the service's.
        reason = result["message"]
        if result.get("failure_code") in DOWNLOAD_FAILURES and settings.STUDIO_URL:
            reason = reason.rstrip(".") + (
                f". The node could not download the run's files from {settings.STUDIO_URL}: "
                "check that the pool's nodes reach Trainyard at STUDIO_URL, and submit again if "
                f"the task waited more than {settings.BATCH_FILE_LINK_HOURS} hours for a node "
                "(BATCH_FILE_LINK_HOURS)."
            )
        return f"{reason}\n".encode()
