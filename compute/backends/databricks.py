"""Azure Databricks: a run is a one-time Databricks job run (Python script, notebook or JAR).

The step says which task kind (`task`: python, notebook or jar, with
`main_class` for a JAR) and where: an existing `cluster_id`, a `new_cluster`
({spark_version, node_type_id, num_workers}), or else the target's default
cluster. The run's files are uploaded to the workspace beside the entry file;
the live log is the task's output. A notebook has no output log on the
service: its log is the value it ends with (`dbutils.notebook.exit`), as the
job's run page shows it.
"""

from __future__ import annotations

from typing import Any

from compute.backends.base import BackendError, CloudHandle, LaunchSpec
from compute.backends.cloud import CloudBackend


class DatabricksBackend(CloudBackend):
    service = "Databricks"

    def submit(self, spec: LaunchSpec, handle: CloudHandle, step: dict[str, Any]) -> dict:
        new_cluster = step.get("new_cluster") or None
        cluster_id = (
            ""
            if new_cluster
            else step.get("cluster_id") or self.target.config.get("cluster_id", "")
        )
        if not cluster_id and not new_cluster:
            raise BackendError(
                f"{self.target.name} has no default cluster and the step names none: give the "
                "step a cluster_id (see the target's page for its clusters) or a new_cluster "
                "with spark_version, node_type_id and num_workers."
            )
        return self.client.submit(
            kind=step.get("task", "python"),
            entry=spec.entry_script,
            files=self.run_files(spec),
            run_name=step.get("run_name") or f"trainyard run {spec.run_id}",
            parameters=spec.arguments,
            cluster_id=cluster_id,
            new_cluster=new_cluster,
            main_class=step.get("main_class", ""),
            idempotency_key=f"trainyard-{spec.run_id}-{handle.attempt}",
            timeout_seconds=step.get("timeout_seconds"),
        )

    def stdout(self, job: dict, offset: int, result: dict) -> bytes:
        if job["kind"] != "notebook":
            return super().stdout(job, offset, result)
        value = result.get("notebook_result")
        return f"Notebook exited: {value}\n".encode()[offset:] if value else b""

    def submitted_text(self, job: dict) -> str:
        return (
            f"Submitted Databricks run {job['run_id']} ({job['kind']}) to "
            f"{self.target.config.get('workspace_url')}: {job.get('run_page_url') or ''}"
        ).rstrip(": ")
