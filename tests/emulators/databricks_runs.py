"""The runs of the Databricks workspace emulator (tests/emulators/databricks.py): its
clusters, runs and task runs, and the passing of time that starts each task as a local
process (a Python script, a SOURCE notebook, a jar), syncs back what it wrote and ends it."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.emulators.base import EmulatorServer, LocalProcess

# Runs a SOURCE notebook with the parts of dbutils a job notebook needs.
NOTEBOOK_RUNNER = r"""
import json, sys

class _Exit(BaseException):
    pass

class _Widgets:
    def __init__(self, values):
        self._values = values
    def get(self, name):
        if name not in self._values:
            raise ValueError(f"No input widget named {name} is defined")
        return self._values[name]
    def text(self, name, default_value="", label=None):
        self._values.setdefault(name, default_value)

class _Notebook:
    def exit(self, value):
        with open(sys.argv[3], "w") as result:
            result.write(str(value))
        raise _Exit()

class _DbUtils:
    def __init__(self, values):
        self.widgets = _Widgets(values)
        self.notebook = _Notebook()

source = open(sys.argv[1]).read()
scope = {"__name__": "__main__", "dbutils": _DbUtils(json.loads(sys.argv[2])), "display": print}
try:
    exec(compile(source, sys.argv[1], "exec"), scope)
except _Exit:
    pass
"""


@dataclass
class Cluster:
    cluster_id: str
    cluster_name: str
    spark_version: str = "13.3.x-scala2.12"
    node_type_id: str = "Standard_DS3_v2"
    num_workers: int = 2
    state: str = "RUNNING"
    job_cluster: bool = False

    def as_json(self) -> dict:
        return {
            "cluster_id": self.cluster_id,
            "cluster_name": self.cluster_name,
            "spark_version": self.spark_version,
            "node_type_id": self.node_type_id,
            "driver_node_type_id": self.node_type_id,
            "num_workers": self.num_workers,
            "state": self.state,
            "cluster_source": "JOB" if self.job_cluster else "UI",
            "creator_user_name": "emulator@example.com",
            "spark_context_id": 4242,
        }


@dataclass
class TaskRun:
    run_id: int
    task_key: str
    spec: dict
    cluster: Cluster
    directory: Path
    process: LocalProcess | None = None
    life_cycle_state: str = "PENDING"
    result_state: str | None = None
    state_message: str = "Waiting for cluster"
    error: str = ""
    notebook_result: str | None = None
    start_at: float = 0.0
    start_time: float = field(default_factory=time.time)
    end_time: float | None = None
    cancel_requested: bool = False
    timeout_seconds: int = 0

    @property
    def log_path(self) -> Path:
        return self.directory / "driver.log"

    @property
    def kind(self) -> str:
        for kind in ("spark_python_task", "notebook_task", "spark_jar_task"):
            if kind in self.spec:
                return kind
        return ""

    def state_json(self) -> dict:
        state = {
            "life_cycle_state": self.life_cycle_state,
            "state_message": self.state_message,
            "user_cancelled_or_timedout": self.result_state == "CANCELED",
        }
        if self.result_state:
            state["result_state"] = self.result_state
        return state


@dataclass
class ParentRun:
    run_id: int
    run_name: str
    tasks: list[TaskRun]
    creator: str
    start_time: float = field(default_factory=time.time)


class DatabricksRuns(EmulatorServer):
    """The running half of the emulator; `DatabricksEmulator` answers the REST API over it."""

    files: dict[str, tuple[str, bytes, str]]
    directories: set[str]
    task_runs: dict[int, TaskRun]
    terminating_seconds: float

    def _advance(self) -> None:
        with self.lock:
            now = time.time()
            for task in self.task_runs.values():
                if task.life_cycle_state == "PENDING" and now >= task.start_at:
                    task.cluster.state = "RUNNING"
                    self._launch(task)
                elif task.life_cycle_state == "RUNNING":
                    code = task.process.poll() if task.process else 0
                    if code is not None:
                        self._finish(task, code)
                    elif task.timeout_seconds and now > task.start_at + task.timeout_seconds:
                        self._time_out(task)
                elif task.life_cycle_state == "TERMINATING":
                    if task.cancel_requested and task.result_state is None:
                        if task.process:
                            task.process.kill()
                            self._sync_back(task)
                        task.result_state = "CANCELED"
                        task.state_message = "Run cancelled."
                        task.end_time = now
                    if task.end_time and now >= task.end_time + self.terminating_seconds:
                        task.life_cycle_state = "TERMINATED"
                        if task.cluster.job_cluster:
                            task.cluster.state = "TERMINATED"

    def _launch(self, task: TaskRun) -> None:
        argv, env, problem = self._command(task)
        task.life_cycle_state = "RUNNING"
        task.state_message = "In run"
        if problem:
            task.log_path.write_text(problem + "\n")
            self._fail(task, problem)
            return
        cwd = Path(env.pop("CWD", task.directory))
        task.process = LocalProcess(argv, cwd=cwd, stdout_path=task.log_path, env=env)
        task.process.start()
        if task.process.start_error:
            self._fail(task, task.process.start_error)

    def _command(self, task: TaskRun) -> tuple[list[str], dict, str]:
        env = {
            "DATABRICKS_RUNTIME_VERSION": task.cluster.spark_version.split(".x")[0],
            "PYTHONUNBUFFERED": "1",
        }
        spec = task.spec
        if "spark_python_task" in spec:
            python_task = spec["spark_python_task"]
            path = python_task.get("python_file", "")
            local = self._materialize(task, path, "FILE")
            if local is None:
                return [], env, f"Cannot read the python file {path}. It does not exist."
            # Newer runtimes run a workspace script in its own folder, beside its files.
            env["CWD"] = str(local.parent)
            return [sys.executable, str(local), *python_task.get("parameters", [])], env, ""
        if "notebook_task" in spec:
            notebook = spec["notebook_task"]
            path = notebook.get("notebook_path", "")
            local = self._materialize(task, path, "NOTEBOOK")
            if local is None:
                return [], env, f"Notebook not found: {path}"
            source = local.read_text()
            for magic in ("%sql", "%scala", "%r", "%sh"):
                if f"# MAGIC {magic}" in source:
                    return [], env, f"This emulator runs Python notebooks only ({magic} cell)."
            env["CWD"] = str(local.parent)
            runner = task.directory / "notebook_runner.py"
            runner.write_text(NOTEBOOK_RUNNER)
            params = json.dumps(notebook.get("base_parameters", {}))
            result = task.directory / "notebook_result.txt"
            return [sys.executable, str(runner), str(local), params, str(result)], env, ""
        jar_task = spec["spark_jar_task"]
        jars = []
        for library in spec.get("libraries", []):
            if "jar" in library:
                local = self._materialize(task, library["jar"], "FILE")
                if local is None:
                    return [], env, f"Library installation failed: {library['jar']} not found."
                jars.append(str(local))
        if not jars:
            return [], env, "A spark_jar_task needs its JAR in libraries."
        main = jar_task.get("main_class_name", "")
        return ["java", "-cp", ":".join(jars), main, *jar_task.get("parameters", [])], env, ""

    def _materialize(self, task: TaskRun, path: str, kind: str) -> Path | None:
        """Copy a workspace file and its folder into the task directory, as a driver sees them."""
        key = path.removeprefix("/Workspace") if path.startswith("/Workspace/") else path
        stored = self.files.get(key)
        if stored is None or (kind == "NOTEBOOK" and stored[0] != "NOTEBOOK"):
            return None
        folder = key.rsplit("/", 1)[0] + "/"
        for other, (_, content, _) in self.files.items():
            if other.startswith(folder):
                local = self.workspace_path(task.run_id, other)
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(content)
        return self.workspace_path(task.run_id, key)

    def workspace_path(self, task_run_id: int, workspace_path: str) -> Path:
        """Where a task run sees a workspace file on this machine (what a script wrote, too)."""
        key = workspace_path.removeprefix("/Workspace")
        return self.task_runs[task_run_id].directory / "workspace" / key.lstrip("/")

    def _sync_back(self, task: TaskRun) -> None:
        """Files a run wrote beside its script become workspace files, as on the service."""
        local_root = task.directory / "workspace"
        for local in sorted(local_root.rglob("*")):
            key = "/" + local.relative_to(local_root).as_posix()
            if local.is_dir():
                self.directories.add(key)
            elif key not in self.files or self.files[key][1] != local.read_bytes():
                self.files[key] = ("FILE", local.read_bytes(), "")

    def _finish(self, task: TaskRun, code: int) -> None:
        self._sync_back(task)
        if task.kind == "notebook_task":
            result = task.directory / "notebook_result.txt"
            if result.exists():
                task.notebook_result = result.read_text()
        task.end_time = time.time()
        task.life_cycle_state = "TERMINATING"
        if code == 0:
            task.result_state = "SUCCESS"
            task.state_message = ""
        else:
            tail = task.log_path.read_text("utf-8", "replace").strip().splitlines()
            self._fail(task, tail[-1] if tail else f"Process exited with code {code}")

    def _time_out(self, task: TaskRun) -> None:
        if task.process:
            task.process.kill()
        self._sync_back(task)
        task.end_time = time.time()
        task.life_cycle_state = "TERMINATING"
        task.result_state = "TIMEDOUT"
        task.state_message = f"Run timed out after {task.timeout_seconds} seconds."
        task.error = task.state_message

    def _fail(self, task: TaskRun, error: str) -> None:
        task.end_time = task.end_time or time.time()
        task.life_cycle_state = "TERMINATING"
        task.result_state = "FAILED"
        task.error = error
        task.state_message = "Workload failed, see run output for details"
