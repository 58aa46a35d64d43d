"""Spark on an HDInsight (or any Spark) head node: the preflight and the master runs use.

The shell pieces live in files/: `spark-env.sh` finds spark-submit the
way a login on the head node would, and is the start of both the preflight and
the command of every PySpark run, so a check that passes means runs find the
same spark-submit.
"""

from __future__ import annotations

import re
from pathlib import Path

from compute import ssh

FILES = Path(__file__).resolve().parent / "files"

# What a PySpark run uses where the cluster names no master of its own.
LOCAL_MASTER = "local[2]"
MASTER_RE = re.compile(
    r"(yarn|local(\[(\d+|\*)(,\d+)?\])?|(spark|k8s)://\S+(,\S+)*)", re.IGNORECASE
)
MASTER_HELP = (
    "yarn, local[N] (N threads on the head node), local[*] or spark://HOST:7077 "
    "for a standalone cluster"
)


def master_problem(master: str) -> str:
    """Why `master` is not a Spark master URL ('' when it is one)."""
    if not master or MASTER_RE.fullmatch(master):
        return ""
    return f"“{master}” is not a Spark master: use {MASTER_HELP}."


def master_label(master: str) -> str:
    """How the detail page names a master: YARN, standalone or local."""
    if master.lower() == "yarn":
        return "YARN"
    if master.lower().startswith("spark://"):
        return f"standalone ({master})"
    if master.lower().startswith("local"):
        return f"local ({master}, on the head node)"
    return master


def _script(name: str) -> str:
    return (FILES / name).read_text()


def preflight_script() -> str:
    return _script("spark-env.sh") + _script("spark-preflight.sh")


def submit_script() -> str:
    return _script("spark-env.sh") + _script("spark-submit.sh")


def spark_preflight(connection: ssh.SshConnection) -> dict:
    """Where spark-submit is, its version, the Python it runs and the master the cluster uses.

    Raises SshError("spark_missing") with what to do when the head node cannot run
    spark-submit for the user Trainyard logs in as.
    """
    code, out, err = connection.run(["sh", "-c", preflight_script()], timeout=120)
    values = {}
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name] = value.strip()
    user = connection.username
    if code != 0 or "spark_submit" not in values:
        raise ssh.SshError(
            "spark_missing",
            f"The Spark check failed on the head node (exit code {code}): "
            f"{err.strip()[-300:] or 'no output'}. Check that user {user} has a POSIX shell.",
        )
    spark_submit = values["spark_submit"]
    if not spark_submit:
        raise ssh.SshError(
            "spark_missing",
            f"Spark not found on the head node: spark-submit is not on PATH for user {user}. "
            "Install Spark or set SPARK_HOME in ~/.profile.",
        )
    if not values.get("spark_version"):
        raise ssh.SshError(
            "spark_broken",
            f"spark-submit ({spark_submit}) did not start for user {user}: "
            f"{values.get('spark_error') or 'no output'}. Install Java on the head node (17 for "
            "Spark 4) and set JAVA_HOME in ~/.profile, then re-check.",
        )
    if values.get("spark_defaults_master"):
        master, source = values["spark_defaults_master"], "spark-defaults.conf"
    elif values.get("yarn") or values.get("hadoop_conf_dir"):
        master = "yarn"
        source = "yarn on PATH" if values.get("yarn") else "HADOOP_CONF_DIR"
    else:
        master, source = LOCAL_MASTER, "no YARN found"
    return {
        "spark_submit": spark_submit,
        "spark_version": values["spark_version"],
        "spark_home": values.get("spark_home") or None,
        "spark_python": values.get("spark_python") or None,
        "spark_python_version": values.get("spark_python_version") or None,
        "yarn": values.get("yarn") or None,
        "spark_master": master,
        "spark_master_source": source,
    }


def target_master(target) -> str:
    """The master runs on `target` use: its setting, else what the cluster uses."""
    return (
        (target.config or {}).get("spark_master")
        or (target.facts or {}).get("spark_master")
        or LOCAL_MASTER
    )
