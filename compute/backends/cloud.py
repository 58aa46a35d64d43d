"""What the Databricks, Batch and Data Lake backends share: the backend interface over a
cloud client (compute/cloud/).

A run on a cloud service is a job there. `launch` submits it with the run's
snapshot files and the settings of its pipeline step; `poll` asks the service
for the job's state and reads its log from the stored offset, so the run
monitor streams it like any other run; `cancel` asks the service to stop the
job and waits until it says it has; `collect` downloads what the job wrote to
`outputs/`.

The `prepare` stream of such a run is the service's side of the story: where
the job was submitted and each state it reports, one line per change.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, BinaryIO

from compute.backends.base import BackendError, CloudHandle, Handle, LaunchSpec, Poll
from compute.cloud.clients import COMPLETED, FINALIZING, RUNNING, CloudError
from compute.cloud.services import cloud_client

# How often a cancel asks the service whether the job has stopped.
CANCEL_POLL_SECONDS = 0.5


class CloudBackend:
    # The service's name in messages, e.g. "Databricks".
    service = ""

    def __init__(self, target) -> None:
        self.target = target
        self._client = None
        self._last_news = ""

    @property
    def client(self):
        if self._client is None:
            self._client = cloud_client(self.target)
        return self._client

    def describe(self) -> str:
        return f"{self.service} target {self.target.name}"

    def call(self, fn):
        """Run a client call; its CloudError becomes the BackendError the monitor understands."""
        try:
            return fn()
        except CloudError as exc:
            raise BackendError(exc.message, unreachable=exc.code == "unreachable") from None

    # --- the interface ---------------------------------------------------------------

    def ensure_root(self) -> None:
        """A service needs no folder of ours set up before a run: its jobs carry their files."""

    def prepare(self, spec: LaunchSpec) -> CloudHandle:
        """Nothing waits on the service yet: the files travel with the job at launch."""
        return CloudHandle(
            uploaded_files=len(spec.manifest),
            uploaded_bytes=sum(entry[2] for entry in spec.manifest),
            reused_files=0,
            # Tells one attempt of a run from the next, and keys the service's idempotency.
            attempt=secrets.token_hex(4),
        )

    def launch(self, spec: LaunchSpec, handle: Handle) -> CloudHandle:
        handle = cloud_handle(handle)
        job = self.call(lambda: self.submit(spec, handle, spec.step))
        return replace(handle, job=job, submitted=self.submitted_text(job))

    def poll(self, handle: Handle, offsets: dict[str, int]) -> Poll:
        handle = cloud_handle(handle)
        job = handle.job
        if job is None:
            raise BackendError(f"The run was never submitted to {self.describe()}.")
        state, finished, result = self.call(lambda: self.client.status(job))
        chunks = {
            "prepare": self._news(handle, state, result, offsets.get("prepare", 0)),
            "stdout": self.call(lambda: self.stdout(job, offsets.get("stdout", 0), result)),
            "stderr": self.call(
                lambda: self.stderr(job, offsets.get("stderr", 0), finished, state, result)
            ),
            "metrics": b"",
        }
        exit_code = None
        if finished:
            exit_code = 0 if state == COMPLETED else int(result.get("exit_code") or 1)
        return Poll(
            state="exited" if finished else "running",
            exit_code=exit_code,
            started=finished or state in (RUNNING, FINALIZING),
            chunks=chunks,
        )

    def cancel(self, handle: Handle, grace_seconds: int) -> int:
        """Ask the service to stop the job; 0 once it reports the job finished, else 1."""
        job = cloud_handle(handle).job
        if job is None:
            return 0
        self.call(lambda: self.client.cancel(job))
        deadline = time.monotonic() + grace_seconds + 30
        while True:
            _, finished, _ = self.call(lambda: self.client.status(job))
            if finished:
                return 0
            if time.monotonic() >= deadline:
                return 1
            time.sleep(CANCEL_POLL_SECONDS)

    def collect(self, handle: Handle, out: BinaryIO, refused: Callable[[str], str]) -> list[str]:
        """Write a tar of what the job wrote to outputs/ (downloaded from the service) into
        `out`; returns the files left out, each with why.

        The service names the files: a name `refused` says is not kept is never
        downloaded, and none is ever a path on this server (the tar becomes blobs).
        """
        job = cloud_handle(handle).job
        if job is None:
            return []
        left_out = []
        files = self.call(lambda: self.client.collect(job))
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name, download in files:
                why = refused(name)
                if why:
                    left_out.append(why)
                    continue
                content = self.call(download)
                info = tarfile.TarInfo(name)
                info.size = len(content)
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(content))
        return left_out

    def cleanup(self, handle: Handle) -> None:
        """The service keeps its job history; nothing of the run is left on this server."""

    def free_port(self) -> int:
        raise BackendError(
            f"A run on {self.describe()} is one job of the service: it has no nodes of its own."
        )

    # --- per service -----------------------------------------------------------------

    def submit(self, spec: LaunchSpec, handle: CloudHandle, step: dict[str, Any]) -> dict:
        raise NotImplementedError

    def submitted_text(self, job: dict) -> str:
        raise NotImplementedError

    def stdout(self, job: dict, offset: int, result: dict) -> bytes:
        return self.client.log(job, offset)

    def stderr(self, job: dict, offset: int, finished: bool, state: str, result: dict) -> bytes:
        if not finished or state == COMPLETED:
            return b""
        return self.client.output(job)[1][offset:]

    # --- helpers ---------------------------------------------------------------------

    @staticmethod
    def run_files(spec: LaunchSpec) -> dict[str, bytes]:
        """The run's snapshot files (its inputs too), path → content, to send with the job."""
        return {path: spec.local_blob(sha).read_bytes() for path, sha, _size, _x in spec.manifest}

    def _news(self, handle: CloudHandle, state: str, result: dict, stored: int) -> bytes:
        """A line for each state the service reports, after the submission line."""
        text = ""
        if stored == 0 and not self._last_news:
            text += handle.submitted + "\n"
        detail = result.get("service_state", "")
        message = result.get("message") or ""
        news = f"{self.service}: {detail} → {state}" + (f" ({message})" if message else "")
        if news != self._last_news:
            self._last_news = news
            text += f"{time.strftime('%H:%M:%S')} {news}\n"
        return text.encode()


def cloud_handle(handle: Handle) -> CloudHandle:
    """The handle of a run that is a service's job: what a cloud backend is given back."""
    if not isinstance(handle, CloudHandle):
        raise TypeError(f"not the handle of a cloud service's job: {handle!r}")
    return handle
