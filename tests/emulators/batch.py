"""An Azure Batch account emulator: the data-plane REST API the official `azure-batch` calls.

Endpoints (api-version as the client sends it, JSON in the service's shapes):
- GET  /pools, GET /pools/{poolId}
- POST /jobs, GET /jobs/{jobId}, POST /jobs/{jobId}/terminate
- POST /jobs/{jobId}/tasks, GET /jobs/{jobId}/tasks, GET /jobs/{jobId}/tasks/{taskId},
  POST /jobs/{jobId}/tasks/{taskId}/terminate
- GET /jobs/{jobId}/tasks/{taskId}/files (`recursive=true` walks the task directory;
  `planted` makes it list more files under `wd/outputs/`, under any names: a service
  answering with hostile names)
- GET / HEAD /jobs/{jobId}/tasks/{taskId}/files/{filePath} (`ocp-range: bytes=a-b`)

Authentication is Shared Key, verified as the service does: the emulator
builds the same string to sign (verb, the standard headers, the `ocp-*`
headers, `/account/path`, the sorted query) and compares the HMAC-SHA256 made
with the account key; a wrong key or account gets 403 AuthenticationFailed.

Scheduling: a job on a pool with nodes gets its tasks run, one task per node
at a time; on a pool without nodes (or a pool id that does not exist, which
the service accepts too) tasks stay `active`. A task's command line runs
without a shell, as on a Linux node (use `/bin/sh -c "..."` for shell syntax),
in `<task dir>/wd`, with stdout.txt / stderr.txt in the task directory and the
AZ_BATCH_* variables plus the task's environment settings. States:
active → preparing → running → completed (executionInfo.result success /
failure with the exit code). Terminating a task or its job kills the process
group (failureInfo TaskEnded). A task whose add request is 1 MB or more is
refused with 413 RequestBodyTooLarge, as the service does. A task's
`resourceFiles` (httpUrl → filePath) are downloaded into its working directory
before its command starts; one that cannot be fetched fails the task
(failureInfo ResourceContainerAccessDenied for 401/403, else BlobDownloadMiscError).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.emulators.base import (
    HttpError,
    LocalProcess,
    Request,
    Response,
    Ticker,
    http_date,
    new_request_id,
)
from tests.emulators.batch_nodes import BatchNodes, Job, Pool, Task, iso

# The service refuses to add a task whose request body is 1 MB or more.
MAX_REQUEST_BYTES = 1024 * 1024
SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)


def task_url(base: str, task) -> str:
    return f"{base}/jobs/{task.job_id}/tasks/{task.id}"


class BatchError(HttpError):
    def __init__(self, status: int, code: str, message: str, values: dict | None = None):
        body: dict[str, Any] = {
            "odata.metadata": "https://batch.emulator/$metadata#Microsoft.Azure.Batch.Protocol"
            ".Entities.Container.errors/@Element",
            "code": code,
            "message": {
                "lang": "en-US",
                "value": f"{message}\nRequestId:{new_request_id()}\nTime:{iso(time.time())}",
            },
        }
        if values:
            body["values"] = [{"key": k, "value": v} for k, v in values.items()]
        super().__init__(status, body, {"request-id": new_request_id()})


class BatchEmulator(BatchNodes):
    name = "batch"

    def __init__(
        self,
        root: Path,
        *,
        account_name: str = "trainyardbatch",
        account_key: str | None = None,
        pools: list[Pool] | None = None,
        preparing_seconds: float = 0.2,
    ):
        super().__init__(root)
        self.account_name = account_name
        self.account_key = account_key or base64.b64encode(b"emulator-batch-key-" * 3).decode()
        # Files a recursive listing of a task's files reports besides its own, by name
        # relative to its wd/outputs/, and their content.
        self.planted: dict[str, bytes] = {}
        self.pools = {
            p.id: p
            for p in (
                pools
                if pools is not None
                else [Pool("cpu-pool"), Pool("empty-pool", dedicated_nodes=0)]
            )
        }
        self.jobs: dict[str, Job] = {}
        self.preparing_seconds = preparing_seconds
        self._etags = itertools.count(1)
        self._ticker = Ticker(self._advance, name="batch-scheduler")

    def start(self, port: int = 0):
        super().start(port)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        super().stop()

    def processes(self) -> list[LocalProcess]:
        return [t.process for j in self.jobs.values() for t in j.tasks.values() if t.process]

    # --- authentication ---

    def string_to_sign(self, request: Request) -> str:
        headers = {k.lower(): v for k, v in request.headers.items() if v}
        if request.method not in ("GET", "HEAD"):
            headers.setdefault("content-length", "0")
        text = request.method + "\n"
        text += "\n".join(headers.get(name, "") for name in SIGNED_HEADERS) + "\n"
        for name in sorted(k for k in headers if k.startswith("ocp-")):
            text += f"{name}:{headers[name]}\n"
        text += f"/{self.account_name}{request.raw_path}"
        query = parse_qs(urlsplit("?" + request.raw_query).query)
        for name in sorted(query):
            if query[name][0]:
                text += f"\n{name}:{query[name][0]}"
        return text

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header:
            raise BatchError(
                401,
                "MissingRequiredHeader",
                "The request is missing a required header: Authorization.",
                {"HeaderName": "Authorization"},
            )
        scheme, _, credential = header.partition(" ")
        account, _, signature = credential.partition(":")
        expected = base64.b64encode(
            hmac.new(
                base64.b64decode(self.account_key),
                self.string_to_sign(request).encode(),
                hashlib.sha256,
            ).digest()
        ).decode()
        if (
            scheme != "SharedKey"
            or account != self.account_name
            or not hmac.compare_digest(signature, expected)
        ):
            raise BatchError(
                403,
                "AuthenticationFailed",
                "Server failed to authenticate the request. Make sure the value of "
                "Authorization header is formed correctly including the signature.",
                {
                    "AuthenticationErrorDetail": "The MAC signature found in the HTTP request "
                    f"'{signature}' is not the same as any computed signature."
                },
            )

    # --- HTTP ---

    def route(self, request: Request) -> Response:
        self._authenticate(request)
        if "api-version" not in request.query:
            raise BatchError(
                400,
                "MissingRequiredQueryParameter",
                "A query parameter that's mandatory for this request is not specified.",
                {"QueryParameterName": "api-version"},
            )
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        with self.lock:
            if parts == ["pools"] and method == "GET":
                return self._list([p.as_json(self.url) for p in self.pools.values()], "pools")
            if len(parts) == 2 and parts[0] == "pools" and method == "GET":
                return Response(200, self._pool(parts[1]).as_json(self.url), self._headers())
            if parts == ["jobs"] and method == "POST":
                return self._job_add(request)
            if len(parts) >= 2 and parts[0] == "jobs":
                job = self._job(parts[1])
                rest = parts[2:]
                if not rest and method == "GET":
                    return Response(200, self._job_json(job), self._headers())
                if rest == ["terminate"] and method == "POST":
                    return self._job_terminate(job, request)
                if rest == ["tasks"] and method == "POST":
                    return self._task_add(job, request)
                if rest == ["tasks"] and method == "GET":
                    return self._list([self._task_json(t) for t in job.tasks.values()], "tasks")
                if len(rest) >= 2 and rest[0] == "tasks":
                    task = self._task(job, rest[1])
                    if len(rest) == 2 and method == "GET":
                        return Response(200, self._task_json(task), self._headers())
                    if rest[2:] == ["terminate"] and method == "POST":
                        self._end_task(task, "Task Was Ended by User Request")
                        return Response(204, None, self._headers())
                    if rest[2:] == ["files"] and method == "GET":
                        return self._task_files(task, request)
                    if len(rest) >= 4 and rest[2] == "files" and method in ("GET", "HEAD"):
                        return self._task_file(task, "/".join(rest[3:]), request)
        raise BatchError(
            400,
            "InvalidUri",
            "The requested URI does not represent any resource on the server.",
            {"UriPath": request.path},
        )

    def _headers(self, **extra) -> dict:
        return {
            "request-id": new_request_id(),
            "ETag": f'"0x{next(self._etags):X}"',
            "Last-Modified": http_date(),
            **extra,
        }

    def _list(self, items: list[dict], what: str) -> Response:
        return Response(
            200,
            {
                "odata.metadata": f"{self.url}/$metadata#{what}",
                "value": items,
            },
            {"request-id": new_request_id()},
        )

    def _pool(self, pool_id: str) -> Pool:
        pool = self.pools.get(pool_id)
        if pool is None:
            raise BatchError(404, "PoolNotFound", "The specified pool does not exist.")
        return pool

    def _job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise BatchError(404, "JobNotFound", "The specified job does not exist.")
        return job

    def _task(self, job: Job, task_id: str) -> Task:
        task = job.tasks.get(task_id)
        if task is None:
            raise BatchError(404, "TaskNotFound", "The specified task does not exist.")
        return task

    def _job_add(self, request: Request) -> Response:
        body = request.json()
        job_id = body.get("id", "")
        pool_id = (body.get("poolInfo") or {}).get("poolId", "")
        missing = [name for name, value in (("id", job_id), ("poolInfo", pool_id)) if not value]
        if missing:
            raise BatchError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                {"PropertyName": missing[0]},
            )
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", job_id):
            raise BatchError(
                400,
                "InvalidPropertyValue",
                "The value provided for one of the properties in the request body is invalid.",
                {"PropertyName": "id", "PropertyValue": job_id},
            )
        if job_id in self.jobs:
            raise BatchError(409, "JobExists", "The specified job already exists.")
        self.jobs[job_id] = Job(
            job_id, pool_id, on_all_tasks_complete=body.get("onAllTasksComplete") or "noaction"
        )
        return Response(
            201,
            None,
            self._headers(
                Location=f"{self.url}/jobs/{job_id}", DataServiceId=f"{self.url}/jobs/{job_id}"
            ),
        )

    def _job_terminate(self, job: Job, request: Request) -> Response:
        if job.state in ("completed", "terminating"):
            raise BatchError(
                409, "JobCompleted", "The specified job is already in a completed state."
            )
        job.move("terminating")
        job.terminate_reason = request.json().get("terminateReason") or "UserTerminate"
        for task in job.tasks.values():
            if task.state in ("preparing", "running"):
                self._end_task(task, "Task Was Ended by User Request")
        return Response(202, None, self._headers(DataServiceId=f"{self.url}/jobs/{job.id}"))

    def _task_add(self, job: Job, request: Request) -> Response:
        if job.state != "active":
            raise BatchError(
                409, "JobCompleted", "The specified job is already in a completed state."
            )
        if len(request.body) >= MAX_REQUEST_BYTES:
            raise BatchError(
                413,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
            )
        body = request.json()
        task_id = body.get("id", "")
        if not task_id or not body.get("commandLine"):
            raise BatchError(
                400,
                "MissingRequiredProperty",
                "A required property was not specified in the request body.",
                {"PropertyName": "id" if not task_id else "commandLine"},
            )
        if task_id in job.tasks:
            raise BatchError(409, "TaskExists", "The specified task already exists.")
        env = {e["name"]: e.get("value", "") for e in body.get("environmentSettings") or []}
        resources = body.get("resourceFiles") or []
        job.tasks[task_id] = Task(
            task_id, job.id, body["commandLine"], env, resource_files=resources
        )
        return Response(
            201,
            None,
            self._headers(DataServiceId=f"{self.url}/jobs/{job.id}/tasks/{task_id}"),
        )

    def _task_files(self, task: Task, request: Request) -> Response:
        if task.directory is None:
            raise BatchError(
                409,
                "OperationInvalidForCurrentState",
                "The specified operation is not valid for the current state of the resource.",
            )
        recursive = request.query.get("recursive", "false").lower() == "true"
        paths = task.directory.rglob("*") if recursive else task.directory.iterdir()
        items = []
        for path in sorted(paths):
            name = path.relative_to(task.directory).as_posix()
            item = {
                "name": name,
                "url": f"{task_url(self.url, task)}/files/{name}",
                "isDirectory": path.is_dir(),
            }
            if path.is_file():
                item["properties"] = {
                    "lastModified": iso(path.stat().st_mtime),
                    "contentLength": path.stat().st_size,
                    "contentType": "application/octet-stream",
                    "fileMode": "0o100644",
                }
            items.append(item)
        if recursive:
            for name, content in self.planted.items():
                planted = f"wd/outputs/{name}"
                items.append(
                    {
                        "name": planted,
                        "url": f"{task_url(self.url, task)}/files/{planted}",
                        "isDirectory": False,
                        "properties": {"contentLength": len(content)},
                    }
                )
        return self._list(items, "files")

    def _task_file(self, task: Task, file_path: str, request: Request) -> Response:
        if task.directory is None:
            raise BatchError(
                409,
                "OperationInvalidForCurrentState",
                "The specified operation is not valid for the current state of the resource.",
            )
        planted = self.planted.get(file_path.removeprefix("wd/outputs/"))
        if planted is not None and file_path.startswith("wd/outputs/"):
            return Response(200, planted, self._headers())
        path = (task.directory / file_path).resolve()
        if not path.is_relative_to(task.directory.resolve()) or not path.is_file():
            raise BatchError(404, "FileNotFound", "The specified file does not exist.")
        data = path.read_bytes()
        size = len(data)
        wanted = request.headers.get("ocp-range", "")
        if wanted.startswith("bytes="):
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first or 0)
            end = int(last) if last else size - 1
            if start >= size and size > 0:
                raise BatchError(
                    416,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                )
            data = data[start : end + 1]
        headers = self._headers(
            **{
                "ocp-creation-time": http_date(task.started),
                "ocp-batch-file-isdirectory": "false",
                "ocp-batch-file-url": f"{task_url(self.url, task)}/files/{file_path}",
                "ocp-batch-file-mode": "0o100644",
                "Content-Type": "application/octet-stream",
            }
        )
        if request.method == "HEAD":
            headers["Content-Length"] = str(size)
            return Response(200, None, headers)
        return Response(200, data, headers)

    def _job_json(self, job: Job) -> dict:
        data: dict[str, Any] = {
            "id": job.id,
            "url": f"{self.url}/jobs/{job.id}",
            "eTag": f'"0x{next(self._etags):X}"',
            "lastModified": iso(job.state_time),
            "creationTime": iso(job.created),
            "state": job.state,
            "stateTransitionTime": iso(job.state_time),
            "priority": 0,
            "maxParallelTasks": -1,
            "allowTaskPreemption": False,
            "usesTaskDependencies": False,
            "constraints": {
                "maxWallClockTime": "P10675199DT2H48M5.4775807S",
                "maxTaskRetryCount": 0,
            },
            "poolInfo": {"poolId": job.pool_id},
            "onAllTasksComplete": job.on_all_tasks_complete,
            "onTaskFailure": "noaction",
            "executionInfo": {"startTime": iso(job.created), "poolId": job.pool_id},
        }
        if job.previous_state:
            data["previousState"] = job.previous_state
        if job.ended:
            data["executionInfo"]["endTime"] = iso(job.ended)
            data["executionInfo"]["terminateReason"] = job.terminate_reason
        return data

    def _task_json(self, task: Task) -> dict:
        data: dict[str, Any] = {
            "id": task.id,
            "url": f"{self.url}/jobs/{task.job_id}/tasks/{task.id}",
            "eTag": f'"0x{next(self._etags):X}"',
            "creationTime": iso(task.created),
            "lastModified": iso(task.state_time),
            "state": task.state,
            "stateTransitionTime": iso(task.state_time),
            "commandLine": task.command_line,
            "environmentSettings": [{"name": k, "value": v} for k, v in task.environment.items()],
            "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
            "constraints": {
                "maxWallClockTime": "P10675199DT2H48M5.4775807S",
                "retentionTime": "P7D",
                "maxTaskRetryCount": 0,
            },
            "requiredSlots": 1,
        }
        if task.previous_state:
            data["previousState"] = task.previous_state
            data["previousStateTransitionTime"] = iso(task.state_time)
        if task.started:
            info: dict[str, Any] = {
                "startTime": iso(task.started),
                "retryCount": 0,
                "requeueCount": 0,
            }
            if task.state == "completed":
                info["endTime"] = iso(task.ended)
                info["exitCode"] = task.exit_code
                info["result"] = (
                    "success" if task.exit_code == 0 and not task.failure else "failure"
                )
                if task.failure:
                    info["failureInfo"] = task.failure
            data["executionInfo"] = info
        if task.node_id:
            pool_id = self.jobs[task.job_id].pool_id
            data["nodeInfo"] = {
                "affinityId": f"TVM:{task.node_id}",
                "nodeUrl": f"{self.url}/pools/{pool_id}/nodes/{task.node_id}",
                "poolId": pool_id,
                "nodeId": task.node_id,
                "taskRootDirectory": f"workitems/{task.job_id}/job-1/{task.id}",
                "taskRootDirectoryUrl": f"{self.url}/jobs/{task.job_id}/tasks/{task.id}/files",
            }
        return data


@pytest.fixture
def batch_emulator(tmp_path):
    """A running Batch account emulator: `.url`, `.account_name`, `.account_key`, `.pools`."""
    with BatchEmulator(tmp_path / "batch") as emulator:
        yield emulator
