"""Azure Data Lake Analytics: a run is a U-SQL job (the service was retired on 2024-02-29).

The entry file is the U-SQL script; the step may set `degree_of_parallelism`
and `priority`. The job has no stdout: its log is the job's state history,
and its compiler diagnostics are its stderr. What a U-SQL job OUTPUTs goes to
Data Lake Store paths, so nothing is collected into the run's outputs.
"""

from __future__ import annotations

import uuid
from typing import Any

from compute.backends.base import BackendError, CloudHandle, LaunchSpec
from compute.backends.cloud import CloudBackend


class DataLakeBackend(CloudBackend):
    service = "Data Lake Analytics"

    def submit(self, spec: LaunchSpec, handle: CloudHandle, step: dict[str, Any]) -> dict:
        try:
            script = self.run_files(spec)[spec.entry_script].decode()
        except UnicodeDecodeError:
            raise BackendError(
                f"{spec.entry_script} is not a text file: a Data Lake step runs a U-SQL script."
            ) from None
        return self.client.submit(
            script=script,
            name=step.get("run_name") or f"trainyard run {spec.run_id}",
            degree_of_parallelism=int(step.get("degree_of_parallelism", 1)),
            priority=int(step.get("priority", 1000)),
            # The same id on a retried launch finds the job the first attempt submitted.
            job_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"trainyard:{spec.run_id}:{handle.attempt}")),
        )

    def submitted_text(self, job: dict) -> str:
        return (
            f"Submitted U-SQL job {job['job_id']} to Data Lake Analytics account "
            f"{self.target.config.get('account_name')}"
        )
