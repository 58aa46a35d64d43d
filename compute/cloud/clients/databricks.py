"""Azure Databricks through the official `databricks-sdk`: check a workspace, run jobs on it.

A run uploads its files to the workspace (`/Users/<me>/trainyard/<folder>/`)
and submits a one-time job run with one task: a Python script
(spark_python_task), a notebook (notebook_task) or a JAR (spark_jar_task), on
an existing cluster or a new job cluster. Logs come from the task run's output
(the service gives none for notebooks: their exit value is the result). What
a script writes under `outputs/` beside itself is collected from the workspace.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from functools import partial

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk import errors as dbx_errors
from databricks.sdk.config import Config
from databricks.sdk.service import compute, jobs, workspace

from compute.cloud.clients import (
    CANCELED,
    COMPLETED,
    FAILED,
    FINALIZING,
    PREPARING,
    QUEUED,
    RUNNING,
    CloudError,
    endpoint_check,
)
from studio.outbound import checked_session

TASK_KINDS = ("python", "notebook", "jar")
NEW_PAT_STEPS = (
    "create a new personal access token in User Settings → Developer → Access tokens "
    "and edit the credentials of this compute target"
)

_LIFE_CYCLE = {
    "QUEUED": QUEUED,
    "BLOCKED": QUEUED,
    "WAITING_FOR_RETRY": QUEUED,
    "PENDING": PREPARING,
    "RUNNING": RUNNING,
    "TERMINATING": FINALIZING,
}
_RESULT = {
    "SUCCESS": COMPLETED,
    "SUCCESS_WITH_FAILURES": COMPLETED,
    "CANCELED": CANCELED,
    "FAILED": FAILED,
    "TIMEDOUT": FAILED,
    "EXCLUDED": CANCELED,
    "UPSTREAM_CANCELED": CANCELED,
    "UPSTREAM_FAILED": FAILED,
    "MAXIMUM_CONCURRENT_RUNS_REACHED": FAILED,
}


class _Config(Config):
    """The SDK's configuration without its host discovery probe.

    That probe fetches /.well-known/databricks-config through a session of its own, past
    the checked one; a personal access token needs nothing it finds.
    """

    # The SDK reads its settings off the class's own attributes, which a subclass lacks.
    _attributes = Config.attributes()

    def _resolve_host_metadata(self) -> None:
        return


class Databricks:
    """One Databricks workspace, reached with a personal access token."""

    def __init__(self, *, workspace_url: str, token: str, timeout: float = 30):
        self.workspace_url = workspace_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._client: WorkspaceClient | None = None

    @classmethod
    def from_target(cls, target) -> Databricks:
        """A client for a Databricks target: `config["workspace_url"]` and its access token."""
        return cls(workspace_url=target.config.get("workspace_url", ""), token=target.access_token)

    @property
    def client(self) -> WorkspaceClient:
        if self._client is None:
            if not self.workspace_url.startswith(("https://", "http://")):
                raise CloudError(
                    "invalid_url",
                    f"'{self.workspace_url}' is not a workspace URL: copy it from the browser, "
                    "e.g. https://adb-1234567890123456.7.azuredatabricks.net",
                )
            endpoint_check(self.workspace_url)
            self._client = self._call(
                lambda: WorkspaceClient(
                    config=_Config(
                        host=self.workspace_url,
                        token=self._token,
                        auth_type="pat",
                        retry_timeout_seconds=int(self._timeout),
                        http_timeout_seconds=int(self._timeout),
                    )
                )
            )
            # The SDK has no way to pass a session in: its own one gets the checked adapter.
            checked_session(self._client.api_client._api_client._session)
        return self._client

    # --- the backend surface ---

    def check(self, *, cluster_id: str = "") -> dict:
        """The token's user and the workspace's clusters; `cluster_id`, if given, must be one."""
        me = self._call(lambda: self.client.current_user.me())
        if cluster_id:
            self._existing_cluster(cluster_id)
        clusters = self._call(lambda: list(self.client.clusters.list()))
        return {
            "workspace_url": self.workspace_url,
            "user": me.user_name,
            "clusters": [
                {
                    "cluster_id": c.cluster_id,
                    "cluster_name": c.cluster_name,
                    "state": c.state.value if c.state else "",
                    "spark_version": c.spark_version,
                    "node_type_id": c.node_type_id,
                    "num_workers": c.num_workers,
                }
                for c in clusters
            ],
        }

    def submit(
        self,
        *,
        kind: str,
        entry: str,
        files: dict[str, bytes],
        run_name: str,
        parameters: list[str] | None = None,
        cluster_id: str = "",
        new_cluster: dict | None = None,
        main_class: str = "",
        idempotency_key: str = "",
        timeout_seconds: int | None = None,
    ) -> dict:
        """Upload `files` and start a one-time run of `entry` (one of them).

        kind: "python" (entry is a .py script), "notebook" (a Python source
        notebook) or "jar" (entry is the JAR, `main_class` its main class).
        Either `cluster_id` (an existing cluster) or `new_cluster`
        ({"spark_version", "node_type_id", "num_workers"}) says where it runs.
        With `idempotency_key` (e.g. the run's id) a retried submit returns the
        run the first one started instead of starting another. The service
        stops the run after `timeout_seconds`.
        """
        if kind not in TASK_KINDS:
            raise CloudError("invalid_request", f"Unknown Databricks task kind '{kind}'.")
        if entry not in files:
            raise CloudError("invalid_request", f"The entry file '{entry}' is not among the files.")
        if bool(cluster_id) == bool(new_cluster):
            raise CloudError(
                "invalid_request",
                "Say where the Databricks run goes: an existing cluster id or a new job cluster.",
            )
        if kind == "jar" and not main_class:
            raise CloudError("invalid_request", "A JAR run needs the name of its main class.")
        missing = [
            k for k in ("spark_version", "node_type_id") if new_cluster and not new_cluster.get(k)
        ]
        if missing:
            raise CloudError(
                "invalid_request",
                f"A new job cluster needs its {' and '.join(missing)}: pick them from the "
                "workspace's cluster settings (e.g. 13.3.x-scala2.12, Standard_DS3_v2).",
            )
        if cluster_id:
            self._existing_cluster(cluster_id)

        me = self._call(lambda: self.client.current_user.me())
        # A retry with the same key writes the same folder the first attempt's run reads.
        suffix = _slug(idempotency_key) if idempotency_key else uuid.uuid4().hex[:8]
        folder = f"/Users/{me.user_name}/trainyard/{_slug(run_name)}-{suffix}"
        self._call(lambda: self.client.workspace.mkdirs(folder))
        for name, content in files.items():
            self._upload(folder, name, content, notebook=(kind == "notebook" and name == entry))
        entry_path = f"{folder}/{_notebook_path(entry) if kind == 'notebook' else entry}"

        task = jobs.SubmitTask(task_key="trainyard")
        if cluster_id:
            task.existing_cluster_id = cluster_id
        elif new_cluster:
            task.new_cluster = compute.ClusterSpec(
                spark_version=new_cluster["spark_version"],
                node_type_id=new_cluster["node_type_id"],
                num_workers=int(new_cluster.get("num_workers", 1)),
            )
        params = list(parameters or [])
        if kind == "python":
            task.spark_python_task = jobs.SparkPythonTask(
                python_file=f"/Workspace{entry_path}",
                parameters=params,
                source=jobs.Source.WORKSPACE,
            )
        elif kind == "notebook":
            task.notebook_task = jobs.NotebookTask(
                notebook_path=entry_path,
                base_parameters=dict(p.split("=", 1) for p in params if "=" in p),
                source=jobs.Source.WORKSPACE,
            )
        else:
            task.spark_jar_task = jobs.SparkJarTask(main_class_name=main_class, parameters=params)
            task.libraries = [compute.Library(jar=f"/Workspace{entry_path}")]

        waiter = self._call(
            lambda: self.client.jobs.submit(
                run_name=run_name,
                tasks=[task],
                idempotency_token=idempotency_key or None,
                timeout_seconds=timeout_seconds,
            )
        )
        run = self._call(lambda: self.client.jobs.get_run(waiter.run_id))
        return {
            "run_id": run.run_id,
            "task_run_id": run.tasks[0].run_id if run.tasks else run.run_id,
            "kind": kind,
            "run_page_url": run.run_page_url or "",
            "folder": folder,
        }

    def status(self, handle: dict) -> tuple[str, bool, dict]:
        run = self._call(lambda: self.client.jobs.get_run(handle["run_id"]))
        state = run.state
        life = state.life_cycle_state.value if state and state.life_cycle_state else "PENDING"
        result_state = state.result_state.value if state and state.result_state else ""
        message = state.state_message if state else ""
        result = {"service_state": life, "result_state": result_state, "message": message or ""}
        if life in ("TERMINATED", "SKIPPED", "INTERNAL_ERROR"):
            studio = _RESULT.get(result_state, FAILED)
            if life == "SKIPPED":
                studio = CANCELED
            if studio != COMPLETED:
                output = self._output(handle)
                result["error"] = output.error or ""
            if handle.get("kind") == "notebook":
                result["notebook_result"] = self._notebook_result(handle)
            return studio, True, result
        return _LIFE_CYCLE.get(life, RUNNING), False, result

    def log(self, handle: dict, offset: int = 0) -> bytes:
        """The task's logs (stdout and stderr, as the service gives them) from byte `offset`."""
        return (self._output(handle).logs or "").encode()[offset:]

    def output(self, handle: dict) -> tuple[bytes, bytes]:
        """stdout: the logs (or a notebook's exit value); stderr: the error trace if it failed."""
        output = self._output(handle)
        stdout = output.logs or ""
        if output.notebook_output and output.notebook_output.result is not None:
            stdout = output.notebook_output.result
        return stdout.encode(), (output.error_trace or output.error or "").encode()

    def cancel(self, handle: dict) -> None:
        self._call(lambda: self.client.jobs.cancel_run(handle["run_id"]))

    def collect(self, handle: dict, *, folder: str = "outputs") -> list[tuple[str, Callable]]:
        """What the run wrote under `folder` beside its script: each file's name as the
        workspace reports it (relative to the script's folder when it is under it), and a
        call that downloads it; none when the run wrote nothing there."""
        root = f"{handle['folder']}/{folder}"
        try:
            objects = list(self.client.workspace.list(root, recursive=True))
        except dbx_errors.NotFound:
            return []
        except Exception as exc:
            raise self._error(exc) from exc
        files: list[tuple[str, Callable]] = []
        for item in objects:
            if item.object_type != workspace.ObjectType.FILE or not item.path:
                continue
            name = item.path
            if name.startswith(root + "/"):
                name = f"{folder}/{name.removeprefix(root + '/')}"
            files.append((name, partial(self._download, item.path)))
        return files

    def _download(self, path: str) -> bytes:
        exported = self._call(
            lambda: self.client.workspace.export(path, format=workspace.ExportFormat.AUTO)
        )
        return base64.b64decode(exported.content or "")

    # --- helpers ---

    def _output(self, handle: dict) -> jobs.RunOutput:
        return self._call(lambda: self.client.jobs.get_run_output(handle["task_run_id"]))

    def _notebook_result(self, handle: dict) -> str:
        output = self._output(handle)
        if output.notebook_output and output.notebook_output.result is not None:
            return output.notebook_output.result
        return ""

    def _existing_cluster(self, cluster_id: str) -> None:
        try:
            self.client.clusters.get(cluster_id)
        except (dbx_errors.InvalidParameterValue, dbx_errors.NotFound) as exc:
            if "does not exist" not in str(exc):
                raise self._error(exc) from exc
            clusters = self._call(lambda: list(self.client.clusters.list()))
            choices = ", ".join(f"{c.cluster_name} ({c.cluster_id})" for c in clusters)
            raise CloudError(
                "cluster_not_found",
                f"Databricks cluster '{cluster_id}' does not exist in {self.workspace_url}: "
                + (f"pick one of: {choices}" if choices else "the workspace has no clusters")
                + ", or run on a new job cluster.",
                secrets=(self._token,),
            ) from exc
        except Exception as exc:
            raise self._error(exc) from exc

    def _upload(self, folder: str, name: str, content: bytes, *, notebook: bool) -> None:
        path = f"{folder}/{_notebook_path(name) if notebook else name}"
        parent = path.rsplit("/", 1)[0]
        if parent != folder:
            self._call(lambda: self.client.workspace.mkdirs(parent))
        encoded = base64.b64encode(content).decode()
        if notebook:
            self._call(
                lambda: self.client.workspace.import_(
                    path,
                    content=encoded,
                    format=workspace.ImportFormat.SOURCE,
                    language=workspace.Language.PYTHON,
                    overwrite=True,
                )
            )
        else:
            self._call(
                lambda: self.client.workspace.import_(
                    path, content=encoded, format=workspace.ImportFormat.AUTO, overwrite=True
                )
            )

    def _call(self, fn):
        try:
            return fn()
        except CloudError:
            raise
        except Exception as exc:
            raise self._error(exc) from exc

    def _error(self, exc: Exception) -> CloudError:
        secrets = (self._token,)
        text = str(exc)
        if isinstance(exc, dbx_errors.Unauthenticated) or (
            isinstance(exc, dbx_errors.PermissionDenied) and "access token" in text.lower()
        ):
            return CloudError(
                "unauthenticated",
                f"The Databricks token was rejected (401): {NEW_PAT_STEPS}.",
                secrets=secrets,
            )
        if isinstance(exc, dbx_errors.PermissionDenied):
            return CloudError(
                "permission_denied",
                f"Databricks refused the request (403: {text}): ask a workspace admin to give "
                "the token's user the permission, or use a token of a user who has it.",
                secrets=secrets,
            )
        # The SDK retries connection failures until its retry budget runs out, then
        # raises TimeoutError.
        if isinstance(
            exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout | TimeoutError
        ):
            return CloudError(
                "unreachable",
                f"Cannot reach the Databricks workspace at {self.workspace_url}: check the "
                "workspace URL and that this server can reach it.",
                secrets=secrets,
            )
        if isinstance(exc, dbx_errors.DatabricksError):
            return CloudError(
                "service_error",
                f"Databricks answered: {text}",
                secrets=secrets,
            )
        return CloudError("service_error", f"Databricks request failed: {text}", secrets=secrets)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:40] or "run"


def _notebook_path(name: str) -> str:
    # The workspace drops a notebook's extension on import.
    return name.removesuffix(".py")
