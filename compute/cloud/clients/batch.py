"""Azure Batch through the official `azure-batch` client, with the account's shared key.

A run becomes a Batch job on a chosen pool with one task, `main`, whose command
line is the run's. The run's files need no storage account: the node
downloads them as the task's resource files from HTTP links it can reach, or
they travel with the task itself (a gzipped tar, base64 in a few environment
settings that the task joins and unpacks into its working directory). Logs
are the task's stdout.txt / stderr.txt.
"""

from __future__ import annotations

import base64
import io
import logging
import re
import shlex
import tarfile
from collections.abc import Callable
from functools import partial

from azure.batch import BatchClient
from azure.batch import models as batch_models
from azure.core.credentials import AzureNamedKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.core.pipeline.policies import HttpLoggingPolicy
from azure.core.pipeline.transport import RequestsTransport

from compute.cloud.clients import (
    CANCELED,
    COMPLETED,
    FAILED,
    PREPARING,
    QUEUED,
    RUNNING,
    CloudError,
    endpoint_check,
)
from studio.outbound import checked_session

TASK_ID = "main"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
FILES_VARIABLE = "TRAINYARD_FILES"
# Each environment setting must fit in one environment string on the node (128 KiB on Linux).
FILES_CHUNK = 96 * 1024
# The service refuses a task whose request is 1 MB or more (RequestBodyTooLarge).
MAX_INLINE_FILES = 8 * FILES_CHUNK
# Every request and response at INFO is the azure client's default: keep them to debugging.
_HTTP_LOG = logging.getLogger(f"{__name__}.http")
_HTTP_LOG.setLevel(logging.WARNING)
KEY_HELP = (
    "copy a key from the Batch account's Keys page in the Azure portal and edit the "
    "credentials of this compute target"
)


class Batch:
    """One Batch account, reached at its account URL with a shared key."""

    def __init__(
        self, *, account_url: str, account_name: str, account_key: str, timeout: float = 30
    ):
        self.account_url = account_url.rstrip("/")
        self.account_name = account_name
        self._key = account_key
        self._timeout = timeout
        self._client: BatchClient | None = None

    @classmethod
    def from_target(cls, target) -> Batch:
        """A client for a Batch compute target: `config["account_url"]`, `config["account_name"]`,
        and the account key kept (encrypted) as the target's access token."""
        return cls(
            account_url=target.config.get("account_url", ""),
            account_name=target.config.get("account_name", ""),
            account_key=target.access_token,
        )

    @property
    def client(self) -> BatchClient:
        if self._client is None:
            if not self.account_url.startswith(("https://", "http://")):
                raise CloudError(
                    "invalid_url",
                    f"'{self.account_url}' is not a Batch account URL: copy it from the account's "
                    "overview page, e.g. https://myaccount.westeurope.batch.azure.com",
                )
            try:
                base64.b64decode(self._key, validate=True)
            except ValueError as exc:
                raise CloudError(
                    "unauthenticated",
                    f"The Batch account key is not a valid key (it must be base64): {KEY_HELP}.",
                ) from exc
            endpoint_check(self.account_url)
            self._client = BatchClient(
                self.account_url,
                AzureNamedKeyCredential(self.account_name, self._key),
                connection_timeout=self._timeout,
                read_timeout=self._timeout,
                retry_total=2,
                http_logging_policy=HttpLoggingPolicy(logger=_HTTP_LOG),
                transport=RequestsTransport(session=checked_session(), session_owner=False),
            )
        return self._client

    # --- the backend surface ---

    def check(self, *, pool_id: str = "") -> dict:
        """The account's pools with sizes and node counts; `pool_id`, if given, must be one."""
        if pool_id:
            self._pool(pool_id)
        pools = self._call(lambda: list(self.client.list_pools()))
        return {
            "account_name": self.account_name,
            "account_url": self.account_url,
            "pools": [_pool_facts(p) for p in pools],
        }

    def submit(
        self,
        *,
        pool_id: str,
        job_id: str,
        command_line: str,
        files: dict[str, bytes] | None = None,
        links: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
    ) -> dict:
        """Create job `job_id` on `pool_id` with one task running `command_line`.

        `files` (name → content) are unpacked into the task's working
        directory before the command runs; the node downloads `links` (name →
        an HTTP URL it can reach) there as the task's resource files.
        Submitting the same `job_id` again (a retry) finds the job and task the
        first attempt made.
        """
        if not JOB_ID.fullmatch(job_id):
            raise CloudError(
                "invalid_request",
                f"'{job_id}' cannot be a Batch job id: use at most 64 letters, digits, "
                "hyphens and underscores.",
            )
        pool = self._pool(pool_id)
        settings = [
            batch_models.EnvironmentSetting(name=k, value=v) for k, v in (environment or {}).items()
        ]
        if files:
            packed = _pack(files)
            if len(packed) > MAX_INLINE_FILES:
                raise CloudError(
                    "files_too_large",
                    f"The run's files (a pipeline step's inputs too) are {len(packed) // 1024} "
                    f"KiB packed, more than the {MAX_INLINE_FILES // 1024} KiB a Batch task can "
                    "carry: set STUDIO_URL so that Batch nodes download them from Trainyard, "
                    "leave data files out of the source directory (.amlignore), give the step "
                    "smaller inputs, or let the script download its data.",
                )
            chunks = {
                f"{FILES_VARIABLE}_{n}": packed[start : start + FILES_CHUNK]
                for n, start in enumerate(range(0, len(packed), FILES_CHUNK))
            }
            settings += [
                batch_models.EnvironmentSetting(name=k, value=v) for k, v in chunks.items()
            ]
            joined = " ".join(f'"${name}"' for name in chunks)
            unpack = f"printf %s {joined} | base64 -d | tar -xzf - && "
            command_line = f"/bin/sh -c {shlex.quote(unpack + command_line)}"
        self._create(
            "JobExists",
            lambda: self.client.create_job(
                batch_models.BatchJobCreateOptions(
                    id=job_id,
                    pool_info=batch_models.BatchPoolInfo(pool_id=pool_id),
                    all_tasks_complete_mode="terminatejob",
                )
            ),
        )
        self._create(
            "TaskExists",
            lambda: self.client.create_task(
                job_id,
                batch_models.BatchTaskCreateOptions(
                    id=TASK_ID,
                    command_line=command_line,
                    environment_settings=settings,
                    resource_files=[
                        batch_models.ResourceFile(http_url=url, file_path=name)
                        for name, url in sorted((links or {}).items())
                    ]
                    or None,
                ),
            ),
        )
        return {
            "job_id": job_id,
            "task_id": TASK_ID,
            "pool_id": pool_id,
            "pool_nodes": pool["dedicated_nodes"] + pool["low_priority_nodes"],
        }

    def status(self, handle: dict) -> tuple[str, bool, dict]:
        task = self._call(lambda: self.client.get_task(handle["job_id"], handle["task_id"]))
        state = _value(task.state)
        result: dict = {"service_state": state, "message": ""}
        info = task.execution_info
        if state == "completed":
            failure = info.failure_info if info else None
            result["exit_code"] = info.exit_code if info else None
            if failure is not None:
                result["message"] = failure.message or ""
                result["failure_code"] = failure.code or ""
                if failure.code == "TaskEnded":
                    return CANCELED, True, result
                return FAILED, True, result
            if info is not None and info.exit_code == 0:
                return COMPLETED, True, result
            result["message"] = f"The command exited with code {result['exit_code']}."
            return FAILED, True, result
        if state == "active":
            if handle.get("pool_nodes") == 0:
                result["message"] = (
                    f"Waiting for a node: pool '{handle['pool_id']}' has no nodes. Resize the pool "
                    "in the Azure portal to run the task."
                )
            return QUEUED, False, result
        if state == "preparing":
            return PREPARING, False, result
        return RUNNING, False, result

    def log(self, handle: dict, offset: int = 0, *, name: str = "stdout.txt") -> bytes:
        """The task's stdout.txt (or `name`) from byte `offset`; empty until the task starts."""
        job_id, task_id = handle["job_id"], handle["task_id"]
        try:
            # Until the task reaches a node it has no files to read.
            state = _value(self.client.get_task(job_id, task_id).state)
            if state in ("active", "preparing"):
                return b""
            size = self.client.get_task_file_properties(job_id, task_id, name).content_length
            if size <= offset:
                return b""
            chunks = self.client.download_task_file(
                job_id, task_id, name, ocp_range=f"bytes={offset}-{size - 1}"
            )
            return b"".join(chunks)
        except HttpResponseError as exc:
            # A HEAD answer has no error body, hence the empty code.
            if exc.status_code in (404, 409) and _code(exc) in (
                "",
                "FileNotFound",
                "OperationInvalidForCurrentState",
                "NodeNotReady",
            ):
                return b""
            raise self._error(exc) from exc
        except Exception as exc:
            raise self._error(exc) from exc

    def output(self, handle: dict) -> tuple[bytes, bytes]:
        return self.log(handle, 0), self.log(handle, 0, name="stderr.txt")

    def collect(self, handle: dict, *, folder: str = "outputs") -> list[tuple[str, Callable]]:
        """The task's `wd/<folder>` files: each one's name as the service lists it (without
        `wd/`), and a call that downloads it."""
        job_id, task_id = handle["job_id"], handle["task_id"]
        prefix = f"wd/{folder}/"
        names = self._call(
            lambda: [
                f.name
                for f in self.client.list_task_files(job_id, task_id, recursive=True)
                if f.name and f.name.startswith(prefix) and not f.is_directory
            ]
        )
        return [
            (name.removeprefix("wd/"), partial(self._download, job_id, task_id, name))
            for name in sorted(names)
        ]

    def _download(self, job_id: str, task_id: str, name: str) -> bytes:
        return self._call(lambda: b"".join(self.client.download_task_file(job_id, task_id, name)))

    def cancel(self, handle: dict) -> None:
        """End the task (its processes are killed) and the job."""
        job_id, task_id = handle["job_id"], handle["task_id"]
        try:
            self.client.terminate_task(job_id, task_id)
            # The client cannot send a terminate without a body (it fails on its own
            # content type), so the request carries the reason the portal shows.
            self.client.begin_terminate_job(
                job_id,
                {"terminateReason": "Canceled in Trainyard"},  # type: ignore[arg-type]
                polling_interval=1,
            )
        except HttpResponseError as exc:
            # A job that already finished has nothing left to stop.
            if exc.status_code == 409 and _code(exc) in ("JobCompleted", "TaskCompleted"):
                return
            raise self._error(exc) from exc
        except Exception as exc:
            raise self._error(exc) from exc

    # --- helpers ---

    def _pool(self, pool_id: str) -> dict:
        try:
            return _pool_facts(self.client.get_pool(pool_id))
        except ResourceNotFoundError as exc:
            pools = self._call(lambda: [p.id for p in self.client.list_pools()])
            choices = ", ".join(pools)
            raise CloudError(
                "pool_not_found",
                f"Batch pool '{pool_id}' does not exist in account '{self.account_name}': create "
                "it in the Azure portal or "
                + (f"pick one of: {choices}" if choices else "create a pool first")
                + ".",
                secrets=(self._key,),
            ) from exc
        except Exception as exc:
            raise self._error(exc) from exc

    def _create(self, exists_code: str, fn) -> None:
        try:
            fn()
        except ResourceExistsError as exc:
            if _code(exc) != exists_code:
                raise self._error(exc) from exc
        except Exception as exc:
            raise self._error(exc) from exc

    def _call(self, fn):
        try:
            return fn()
        except CloudError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> CloudError:
        secrets = (self._key,)
        if isinstance(exc, ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError)
            and exc.status_code == 403
            and _code(exc) == "AuthenticationFailed"
        ):
            return CloudError(
                "unauthenticated",
                f"Batch account '{self.account_name}' rejected the account key "
                f"({exc.status_code if isinstance(exc, HttpResponseError) else 401}): {KEY_HELP}.",
                secrets=secrets,
            )
        if isinstance(exc, ServiceRequestError):
            return CloudError(
                "unreachable",
                f"Cannot reach the Batch account at {self.account_url}: check the account URL "
                "and that this server can reach it.",
                secrets=secrets,
            )
        if isinstance(exc, HttpResponseError):
            message = exc.error.message if exc.error is not None else exc.message
            return CloudError(
                "service_error",
                f"Azure Batch answered {exc.status_code} {_code(exc)}: "
                f"{(message or '').splitlines()[0] if message else ''}",
                secrets=secrets,
            )
        return CloudError("service_error", f"Azure Batch request failed: {exc}", secrets=secrets)


def _code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    return (error.code if error is not None else "") or ""


def _value(enum_or_text) -> str:
    return str(getattr(enum_or_text, "value", enum_or_text) or "")


def _pool_facts(pool) -> dict:
    return {
        "id": pool.id,
        "vm_size": pool.vm_size,
        "state": _value(pool.state),
        "allocation_state": _value(pool.allocation_state),
        "dedicated_nodes": pool.current_dedicated_nodes or 0,
        "low_priority_nodes": pool.current_low_priority_nodes or 0,
    }


def _pack(files: dict[str, bytes]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(content))
    return base64.b64encode(buffer.getvalue()).decode()
