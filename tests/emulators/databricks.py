"""An Azure Databricks workspace emulator: the REST endpoints `databricks-sdk` calls for jobs.

Endpoints (same paths, bodies and error JSON as the service):
- GET  /.well-known/databricks-config          host metadata the SDK reads at start (no auth)
- GET  /api/2.0/preview/scim/v2/Me              the token's user
- GET  /api/2.1/clusters/list, /api/2.1/clusters/get?cluster_id=
- POST /api/2.0/workspace/mkdirs, /api/2.0/workspace/import (JSON, base64 content)
- GET  /api/2.0/workspace/list?path=, /api/2.0/workspace/export?path= (JSON, base64 content);
  what a run writes beside its script becomes workspace files when it ends
  (`planted` makes the listing of every `outputs` folder report more files, under any
  names: a service answering with hostile names)
- POST /api/2.2/jobs/runs/submit                one-time run with `tasks` (2.1+ API);
  `idempotency_token` returns the run already started with it, `timeout_seconds`
  ends a run that outlives it (result TIMEDOUT)
- GET  /api/2.2/jobs/runs/get?run_id=, /api/2.2/jobs/runs/get-output?run_id=<task run id>
- POST /api/2.2/jobs/runs/cancel

Every /api call needs `Authorization: Bearer <token>`; anything else gets the
401 the service sends. Unknown clusters and runs get 400 INVALID_PARAMETER_VALUE
("Cluster ... does not exist"), as the service answers.

Execution, for real, on this machine:
- spark_python_task: the workspace file runs with this Python; `parameters`
  are its arguments. There is no Spark: a script that imports pyspark fails
  as it would on a cluster without it.
- notebook_task: a Python SOURCE notebook (cells split by `# COMMAND ----------`)
  runs in one interpreter, in its workspace folder beside the files imported
  with it (as Databricks Runtime 14+ does), with a small `dbutils`:
  `dbutils.widgets.get(name)` reads `base_parameters`, `dbutils.notebook.exit(value)`
  ends the run and becomes `notebook_output.result`. `%sql`/`%scala` magics are rejected.
- spark_jar_task: `java -cp <workspace jars from libraries> <main_class_name> <parameters>`.

Run life cycle: PENDING (cluster start for `new_cluster`, `pending_seconds`)
→ RUNNING → TERMINATING → TERMINATED with SUCCESS / FAILED / CANCELED.
`get-output` returns the task's stdout+stderr so far as `logs` (not for
notebooks, as on the service) and `error` / `error_trace` on failure.
"""

from __future__ import annotations

import base64
import itertools
import time
from pathlib import Path

import pytest

from tests.emulators.base import (
    HttpError,
    LocalProcess,
    Request,
    Response,
    Ticker,
)
from tests.emulators.databricks_runs import Cluster, DatabricksRuns, ParentRun, TaskRun

LOGS_LIMIT = 5 * 1024 * 1024
NOTEBOOK_HEADER = "# Databricks notebook source"
CELL_SEPARATOR = "# COMMAND ----------"


class DatabricksError(HttpError):
    def __init__(self, status: int, error_code: str, message: str):
        super().__init__(status, {"error_code": error_code, "message": message})


def invalid(message: str) -> DatabricksError:
    return DatabricksError(400, "INVALID_PARAMETER_VALUE", message)


class DatabricksEmulator(DatabricksRuns):
    name = "databricks"

    def __init__(
        self,
        root: Path,
        *,
        token: str = "dapi-emulator-token-0123456789abcdef",  # noqa: S107 - the emulator's own
        user_name: str = "alice@example.com",
        clusters: list[Cluster] | None = None,
        pending_seconds: float = 0.2,
        new_cluster_seconds: float = 0.6,
        terminating_seconds: float = 0.2,
    ):
        super().__init__(root)
        self.token = token
        self.user_name = user_name
        self.workspace_id = "1234567890123456"
        self.clusters: dict[str, Cluster] = {
            c.cluster_id: c
            for c in (
                clusters
                if clusters is not None
                else [
                    Cluster("0923-164208-meows279", "shared-autoscale"),
                    Cluster("1101-093012-bark123", "gpu-ml", node_type_id="Standard_NC6s_v3"),
                ]
            )
        }
        self.pending_seconds = pending_seconds
        self.new_cluster_seconds = new_cluster_seconds
        self.terminating_seconds = terminating_seconds
        self.files: dict[str, tuple[str, bytes, str]] = {}  # path -> (object type, content, lang)
        # Files the listing of every folder named `outputs` reports besides its own, by name
        # relative to that folder (an absolute name is reported as it is), and their content.
        self.planted: dict[str, bytes] = {}
        self.directories: set[str] = {"/", "/Users", "/Shared", f"/Users/{user_name}"}
        self.runs: dict[int, ParentRun] = {}
        self.idempotency_tokens: dict[str, int] = {}
        self.task_runs: dict[int, TaskRun] = {}
        self._ids = itertools.count(1000)
        self._ticker = Ticker(self._advance, name="databricks-runs")

    def start(self, port: int = 0):
        super().start(port)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        super().stop()

    def processes(self) -> list[LocalProcess]:
        return [t.process for t in self.task_runs.values() if t.process]

    # --- HTTP ---

    def route(self, request: Request) -> Response:
        if request.path == "/.well-known/databricks-config":
            return Response(
                200,
                {
                    "oidc_endpoint": f"{self.url}/oidc",
                    "workspace_id": self.workspace_id,
                    "cloud": "azure",
                },
            )
        if not request.path.startswith("/api/"):
            raise HttpError(404, b"<html><body>Not Found</body></html>")
        self._authenticate(request)
        handlers = {
            ("GET", "/api/2.0/preview/scim/v2/Me"): self._me,
            ("GET", "/api/2.1/clusters/list"): self._clusters_list,
            ("GET", "/api/2.1/clusters/get"): self._clusters_get,
            ("POST", "/api/2.0/workspace/mkdirs"): self._mkdirs,
            ("POST", "/api/2.0/workspace/import"): self._import,
            ("GET", "/api/2.0/workspace/list"): self._list,
            ("GET", "/api/2.0/workspace/export"): self._export,
            ("POST", "/api/2.2/jobs/runs/submit"): self._submit,
            ("GET", "/api/2.2/jobs/runs/get"): self._runs_get,
            ("GET", "/api/2.2/jobs/runs/get-output"): self._runs_get_output,
            ("POST", "/api/2.2/jobs/runs/cancel"): self._runs_cancel,
        }
        handler = handlers.get((request.method, request.path))
        if handler is None:
            raise DatabricksError(
                404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'"
            )
        with self.lock:
            return Response(200, handler(request))

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise DatabricksError(
                401,
                "UNAUTHENTICATED",
                "Credential was not sent or was of an unsupported type for this API.",
            )
        if header.removeprefix("Bearer ") != self.token:
            raise DatabricksError(401, "UNAUTHENTICATED", "Invalid access token.")

    def _me(self, request: Request) -> dict:
        return {
            "id": "8123456789012345",
            "userName": self.user_name,
            "displayName": self.user_name.split("@")[0].title(),
            "active": True,
            "emails": [{"value": self.user_name, "primary": True, "type": "work"}],
        }

    def _clusters_list(self, request: Request) -> dict:
        return {"clusters": [c.as_json() for c in self.clusters.values()]}

    def _clusters_get(self, request: Request) -> dict:
        return self._cluster(request.query.get("cluster_id", "")).as_json()

    def _cluster(self, cluster_id: str) -> Cluster:
        if not cluster_id:
            raise invalid("Missing required field: cluster_id")
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise invalid(f"Cluster {cluster_id} does not exist")
        return cluster

    def _mkdirs(self, request: Request) -> dict:
        path = request.json().get("path", "")
        if not path.startswith("/"):
            raise invalid(f"Path ({path}) must be absolute")
        parts = path.rstrip("/").split("/")
        for n in range(2, len(parts) + 1):
            self.directories.add("/".join(parts[:n]))
        return {}

    def _import(self, request: Request) -> dict:
        body = request.json()
        path = body.get("path", "")
        if not path.startswith("/"):
            raise invalid(f"Path ({path}) must be absolute")
        parent = path.rsplit("/", 1)[0] or "/"
        if parent not in self.directories:
            raise DatabricksError(
                404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist."
            )
        try:
            content = base64.b64decode(body.get("content", ""), validate=True)
        except ValueError as exc:
            raise invalid("The content is not valid base64.") from exc
        if path in self.files and str(body.get("overwrite")).lower() != "true":
            raise DatabricksError(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists.")
        fmt = body.get("format", "SOURCE")
        language = body.get("language", "")
        if fmt == "SOURCE" and not language:
            raise invalid("The language field is required with format SOURCE.")
        is_notebook = fmt == "SOURCE" or (
            fmt == "AUTO" and content.startswith(NOTEBOOK_HEADER.encode())
        )
        self.files[path] = ("NOTEBOOK" if is_notebook else "FILE", content, language)
        return {}

    def _list(self, request: Request) -> dict:
        path = request.query.get("path", "").rstrip("/") or "/"
        if path not in self.directories:
            if path in self.files:
                return {"objects": [self._object(path)]}
            raise DatabricksError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        prefix = "" if path == "/" else path
        children = sorted(
            {
                p
                for p in (*self.directories, *self.files)
                if p.startswith(prefix + "/") and "/" not in p[len(prefix) + 1 :] and p != path
            }
        )
        objects = [self._object(p) for p in children]
        if path.endswith("/outputs"):
            objects += [
                {"path": self._planted_path(path, name), "object_type": "FILE", "object_id": n}
                for n, name in enumerate(self.planted)
            ]
        return {"objects": objects} if objects else {}

    @staticmethod
    def _planted_path(folder: str, name: str) -> str:
        return name if name.startswith("/") else f"{folder}/{name}"

    def _object(self, path: str) -> dict:
        if path in self.directories:
            return {"path": path, "object_type": "DIRECTORY", "object_id": abs(hash(path))}
        kind, content, language = self.files[path]
        info = {"path": path, "object_type": kind, "object_id": abs(hash(path))}
        info["size"] = len(content)
        if language:
            info["language"] = language
        return info

    def _export(self, request: Request) -> dict:
        path = request.query.get("path", "")
        for name, content in self.planted.items():
            if path == name or path.endswith(f"/outputs/{name}"):
                return {"content": base64.b64encode(content).decode(), "file_type": "txt"}
        if path not in self.files:
            raise DatabricksError(404, "RESOURCE_DOES_NOT_EXIST", f"Path ({path}) doesn't exist.")
        kind, content, _ = self.files[path]
        return {
            "content": base64.b64encode(content).decode(),
            "file_type": "py" if kind == "NOTEBOOK" else path.rsplit(".", 1)[-1],
        }

    def _submit(self, request: Request) -> dict:
        body = request.json()
        token = body.get("idempotency_token")
        if token and token in self.idempotency_tokens:
            return {"run_id": self.idempotency_tokens[token]}
        tasks = body.get("tasks")
        if not tasks:
            raise invalid("A run needs at least one task: the tasks field is empty.")
        run_id = next(self._ids)
        run_dir = self.root / f"run-{run_id}"
        task_runs = []
        for spec in tasks:
            key = spec.get("task_key") or "task"
            task_runs.append(
                TaskRun(
                    run_id=next(self._ids),
                    task_key=key,
                    spec=spec,
                    cluster=self._task_cluster(spec, run_id),
                    directory=run_dir / key,
                )
            )
        for task in task_runs:
            if not task.kind:
                raise invalid(
                    f"Task {task.task_key} needs one of spark_python_task, notebook_task "
                    "or spark_jar_task."
                )
            task.directory.mkdir(parents=True, exist_ok=True)
            task.log_path.touch()
            wait = self.new_cluster_seconds if task.cluster.job_cluster else self.pending_seconds
            task.start_at = time.time() + wait
            if task.cluster.job_cluster:
                task.state_message = "Waiting for cluster"
            self.task_runs[task.run_id] = task
        for task in task_runs:
            task.timeout_seconds = int(body.get("timeout_seconds") or 0)
        self.runs[run_id] = ParentRun(
            run_id, body.get("run_name") or f"Untitled run {run_id}", task_runs, self.user_name
        )
        if token:
            self.idempotency_tokens[token] = run_id
        return {"run_id": run_id}

    def _task_cluster(self, spec: dict, run_id: int) -> Cluster:
        if spec.get("existing_cluster_id"):
            return self._cluster(spec["existing_cluster_id"])
        new = spec.get("new_cluster")
        if not new:
            raise invalid(
                "One of job_cluster_key, new_cluster, or existing_cluster_id must be specified."
            )
        if not new.get("spark_version"):
            raise invalid("Missing required field: spark_version")
        if not (new.get("node_type_id") or new.get("instance_pool_id")):
            raise invalid("Missing required field: node_type_id")
        if "num_workers" not in new and "autoscale" not in new:
            raise invalid("Missing required field: num_workers or autoscale")
        cluster = Cluster(
            cluster_id=f"{time.strftime('%m%d-%H%M%S')}-job{run_id}",
            cluster_name=f"job-{run_id}-run-{spec.get('task_key', 'task')}",
            spark_version=new["spark_version"],
            node_type_id=new.get("node_type_id", ""),
            num_workers=int(new.get("num_workers", 0)),
            state="PENDING",
            job_cluster=True,
        )
        self.clusters[cluster.cluster_id] = cluster
        return cluster

    def _parent(self, request: Request) -> ParentRun:
        raw = request.query.get("run_id") or request.json().get("run_id")
        try:
            run_id = int(str(raw))
        except ValueError as exc:
            raise invalid("Missing required field: run_id") from exc
        if run_id in self.runs:
            return self.runs[run_id]
        raise invalid(f"Run {run_id} does not exist.")

    def _runs_get(self, request: Request) -> dict:
        return self._run_json(self._parent(request))

    def _runs_get_output(self, request: Request) -> dict:
        raw = request.query.get("run_id", "")
        try:
            run_id = int(raw)
        except ValueError as exc:
            raise invalid("Missing required field: run_id") from exc
        if run_id in self.runs:
            raise invalid(
                "Retrieving the output of runs with multiple tasks is not supported. "
                "Please retrieve the output of each individual task run instead."
            )
        task = self.task_runs.get(run_id)
        if task is None:
            raise invalid(f"Run {run_id} does not exist.")
        output: dict = {"metadata": self._task_json(task)}
        if task.kind == "notebook_task":
            if task.notebook_result is not None:
                output["notebook_output"] = {"result": task.notebook_result, "truncated": False}
        else:
            logs = task.log_path.read_bytes()
            output["logs"] = logs[:LOGS_LIMIT].decode("utf-8", "replace")
            output["logs_truncated"] = len(logs) > LOGS_LIMIT
        if task.error:
            output["error"] = task.error
            output["error_trace"] = task.log_path.read_text("utf-8", "replace")[-20000:]
        return output

    def _runs_cancel(self, request: Request) -> dict:
        run = self._parent(request)
        for task in run.tasks:
            if task.life_cycle_state in ("PENDING", "RUNNING"):
                task.cancel_requested = True
                task.life_cycle_state = "TERMINATING"
                task.state_message = "Run cancellation requested."
        return {}

    def _run_json(self, run: ParentRun) -> dict:
        tasks = [self._task_json(t) for t in run.tasks]
        states = [t.life_cycle_state for t in run.tasks]
        results = [t.result_state for t in run.tasks]
        if all(s == "TERMINATED" for s in states):
            life = "TERMINATED"
            result = next(
                (r for r in ("CANCELED", "TIMEDOUT", "FAILED") if r in results), "SUCCESS"
            )
        elif "TERMINATING" in states:
            life, result = "TERMINATING", None
        elif "RUNNING" in states:
            life, result = "RUNNING", None
        else:
            life, result = "PENDING", None
        message = next((t.state_message for t in run.tasks if t.state_message), "")
        state: dict = {
            "life_cycle_state": life,
            "state_message": message,
            "user_cancelled_or_timedout": result == "CANCELED",
        }
        if result:
            state["result_state"] = result
        ends = [t.end_time or 0.0 for t in run.tasks]
        return {
            "run_id": run.run_id,
            "number_in_job": run.run_id,
            "run_name": run.run_name,
            "creator_user_name": run.creator,
            "run_type": "SUBMIT_RUN",
            "state": state,
            "start_time": int(run.start_time * 1000),
            "end_time": int(max(ends) * 1000) if all(ends) else 0,
            "run_page_url": f"{self.url}/?o={self.workspace_id}#job/runs/{run.run_id}",
            "tasks": tasks,
        }

    def _task_json(self, task: TaskRun) -> dict:
        data = {
            "run_id": task.run_id,
            "task_key": task.task_key,
            "state": task.state_json(),
            "start_time": int(task.start_time * 1000),
            "end_time": int(task.end_time * 1000) if task.end_time else 0,
            "cluster_instance": {"cluster_id": task.cluster.cluster_id, "spark_context_id": "4242"},
            "attempt_number": 0,
        }
        for key in (
            "spark_python_task",
            "notebook_task",
            "spark_jar_task",
            "existing_cluster_id",
            "new_cluster",
            "libraries",
        ):
            if key in task.spec:
                data[key] = task.spec[key]
        return data


@pytest.fixture
def databricks_emulator(tmp_path):
    """A running Databricks workspace emulator; `.url`, `.token`, `.clusters`."""
    with DatabricksEmulator(tmp_path / "databricks") as emulator:
        yield emulator
