"""HDInsight / Spark head nodes: a VM over SSH whose runs are `spark-submit` jobs.

Everything but the command is the VM backend's: the snapshot upload, the
detached process group, the log files the monitor streams, cancel and collect.
run.sh runs `$PYTHON $ENTRY "$@"`; here that becomes
`sh ctl/spark-submit.sh MASTER PYTHON ENTRY ARGS...`, which execs
`spark-submit --master MASTER ENTRY ARGS...` in the head node's login environment.
PySpark's workers leave the run's process group; cancel finds them by the run's mark.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from compute.backends.base import LaunchSpec
from compute.backends.vm import VmBackend
from compute.vm import spark

SUBMIT_SCRIPT = "spark-submit.sh"


class HdInsightBackend(VmBackend):
    def control_files(self, spec: LaunchSpec) -> dict[str, bytes | Path]:
        return {SUBMIT_SCRIPT: spark.submit_script().encode()}

    def config_sh(self, spec: LaunchSpec, run_dir: str) -> str:
        # Sourced in order, so these lines override what the VM backend set:
        # "$PYTHON" still holds the environment's interpreter when `set --` reads it.
        master = spark.target_master(self.target)
        arguments = shlex.join([spec.entry_script, *spec.arguments])
        return super().config_sh(spec, run_dir) + (
            f'set -- {shlex.quote(master)} "$PYTHON" {arguments}\n'
            "PYTHON=sh\n"
            f"ENTRY={shlex.quote(f'{run_dir}/ctl/{SUBMIT_SCRIPT}')}\n"
        )
