"""The `az ml` runconfig YAML (`.azureml/<target>.runconfig`): read it into submit fields.

Only the keys a script run uses are read; others (data references, Spark
settings, ...) are ignored, as the CLI ignores what a target does not need.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

import yaml

from runs.run_based import RunBasedSpec
from studio import safeyaml
from studio.errors import ServiceError

# The runconfig's spelling (any case) → how runs store it.
SUPPORTED_FRAMEWORKS = {"python": "Python", "pyspark": "PySpark"}
# A multi-node run starts one process per node with the rendezvous environment
# torch.distributed reads (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which is
# what these communicators use; MPI and parameter servers are started differently.
SUPPORTED_COMMUNICATORS = ("none", "gloo", "nccl")


class RunConfigError(ServiceError):
    """The file cannot be used; the message names the key and what to change."""


@dataclass
class EnvironmentSpec:
    name: str = ""
    interpreter_path: str = ""
    user_managed: bool = False
    conda_yaml: str = ""
    docker_image: str = ""
    docker_gpus: bool = False


@dataclass
class RunConfig:
    script: str = ""
    arguments: list[str] = field(default_factory=list)
    target: str = ""
    # "" when the file names none.
    framework: str = ""
    max_duration_seconds: int | None = None
    node_count: int | None = None
    environment: EnvironmentSpec | None = None
    # The amlcompute section, for `target: amlcompute` (a cluster created for the run).
    run_based: RunBasedSpec | None = None


def _int(value, key: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RunConfigError(f"{key} must be a whole number, not {value!r}.") from None
    if number < 0:
        raise RunConfigError(f"{key} must not be negative.")
    return number


def parse_runconfig(text: str) -> RunConfig:
    try:
        data = safeyaml.load(text, what="the runconfig")
    except safeyaml.YamlError as exc:
        raise RunConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise RunConfigError(
            "The runconfig must be a YAML mapping with keys such as script, arguments, target."
        )
    config = RunConfig()
    config.script = str(data.get("script") or "")
    arguments = data.get("arguments") or []
    if isinstance(arguments, str):
        arguments = shlex.split(arguments)
    if not isinstance(arguments, list):
        raise RunConfigError("arguments must be a list, e.g. [--epochs, 10].")
    config.arguments = [str(a) for a in arguments]
    config.target = str(data.get("target") or "")
    framework = str(data.get("framework") or "")
    if framework and framework.lower() not in SUPPORTED_FRAMEWORKS:
        raise RunConfigError(
            f"framework {framework} is not supported here: use Python, or PySpark for a job "
            "on an HDInsight / Spark target."
        )
    config.framework = SUPPORTED_FRAMEWORKS.get(framework.lower(), "")
    config.max_duration_seconds = _int(data.get("maxRunDurationSeconds"), "maxRunDurationSeconds")
    config.node_count = _int(data.get("nodeCount"), "nodeCount")
    communicator = str(data.get("communicator") or "None")
    if communicator.lower() not in SUPPORTED_COMMUNICATORS:
        raise RunConfigError(
            f"communicator {communicator} is not supported here: a multi-node run starts one "
            "process per node with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, as "
            "torch.distributed expects. Use communicator None, Gloo or Nccl."
        )

    config.run_based = _run_based(data.get("amlcompute"))

    env = data.get("environment")
    if isinstance(env, dict):
        spec = EnvironmentSpec(name=str(env.get("name") or ""))
        python = env.get("python") or {}
        if isinstance(python, dict):
            spec.interpreter_path = str(python.get("interpreterPath") or "")
            spec.user_managed = bool(python.get("userManagedDependencies"))
            conda = python.get("condaDependencies")
            if conda and not spec.user_managed:
                spec.conda_yaml = yaml.safe_dump(conda, sort_keys=False)
        docker = env.get("docker") or {}
        if isinstance(docker, dict) and docker.get("enabled"):
            spec.docker_image = str(docker.get("baseImage") or "")
            if not spec.docker_image:
                raise RunConfigError("environment.docker.enabled is true but baseImage is empty.")
            spec.docker_gpus = bool(docker.get("gpuSupport"))
        config.environment = spec
    return config


def _run_based(section) -> RunBasedSpec | None:
    """The `amlcompute` section: vmSize, vmPriority, clusterMaxNodeCount, retainCluster."""
    if not isinstance(section, dict) or not section.get("vmSize"):
        return None
    priority = str(section.get("vmPriority") or "dedicated").lower()
    if priority not in ("dedicated", "lowpriority"):
        raise RunConfigError(
            f"amlcompute.vmPriority {section.get('vmPriority')} is not known: use dedicated or "
            "lowpriority."
        )
    return RunBasedSpec(
        vm_size=str(section["vmSize"]),
        vm_priority=priority,
        max_nodes=_int(section.get("clusterMaxNodeCount"), "amlcompute.clusterMaxNodeCount") or 1,
        retain=bool(section.get("retainCluster")),
    )
