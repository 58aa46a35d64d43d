"""The pipeline definition file (YAML): steps, where each runs, and the data passed between them.

The format is EXAMPLE below, which the submit form shows. A step starts when
every step that produces one of its `inputs` (and every step named in its
`after`) has completed; if one of them fails, the step is not started and the
pipeline fails.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from compute.models import ComputeKind
from studio import safeyaml

STEP_TYPES: dict[str, tuple[str, ...]] = {
    "script": (ComputeKind.LOCAL, ComputeKind.VM, ComputeKind.CLUSTER),
    "pyspark": (ComputeKind.HDINSIGHT,),
    "databricks": (ComputeKind.DATABRICKS,),
    "datalake": (ComputeKind.DATALAKE,),
    "batch": (ComputeKind.BATCH,),
}
# The step type a compute target's kind runs when a script run is submitted to it.
TYPE_OF_KIND: dict[str, str] = {
    kind: step_type for step_type, kinds in STEP_TYPES.items() for kind in kinds
}
TYPE_LABELS = {
    "script": "Script",
    "pyspark": "PySpark",
    "databricks": "Databricks",
    "datalake": "Data Lake (U-SQL)",
    "batch": "Azure Batch",
}
COMMON_KEYS = {"name", "type", "compute", "source_directory", "inputs", "outputs", "after"}
KEYS = {
    "script": {"script", "arguments", "environment", "max_duration_seconds"},
    "pyspark": {"script", "arguments", "environment", "max_duration_seconds"},
    "databricks": {
        "python_script",
        "notebook",
        "jar",
        "main_class",
        "arguments",
        "cluster_id",
        "new_cluster",
        "timeout_seconds",
    },
    "datalake": {"script", "degree_of_parallelism", "priority"},
    "batch": {"command", "script", "arguments", "pool"},
}
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
MAX_STEPS = 50


EXAMPLE = """\
name: word-count                 # optional: the pipeline's display name
experiment: text-jobs            # optional when the form or the API names the experiment
steps:
  - name: prepare                # letters, digits, _ and -; unique in the pipeline
    type: script                 # script (default) | pyspark | databricks | datalake | batch
    compute: local               # a compute target of the workspace that runs this type
    script: prepare.py           # relative to source_directory (default: the upload's root)
    arguments: [--lines, 100]     # a list, or one string split like a shell would
    outputs: [words]             # it writes ./outputs/words/ (or the file ./outputs/words)
  - name: count
    type: databricks
    compute: dbx
    python_script: count.py      # or notebook: count.py, or jar: app.jar with main_class
    cluster_id: 0923-164208-meows279   # or a new job cluster:
    # new_cluster: {spark_version: 13.3.x-scala2.12, node_type_id: Standard_DS3_v2, num_workers: 2}
    inputs: [words]              # copied to ./inputs/words/ beside the script before it starts
    outputs: [counts]
  - name: report
    type: batch
    compute: batchacct
    command: python3 report.py   # or script: + arguments; on `pool` (default: the target's)
    inputs: [counts]
  - name: archive                # a Data Lake step runs a U-SQL script (no files in or out)
    type: datalake
    compute: adla
    script: archive.usql
    after: [report]              # waits for `report` without taking its data
"""


class DefinitionError(Exception):
    """The file cannot be used as it is; the message names the step and key to change."""


@dataclass
class StepSpec:
    name: str
    type: str
    compute: str
    entry: str = ""
    arguments: list[str] = field(default_factory=list)
    environment: str = ""
    source_directory: str = ""
    max_duration_seconds: int | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    # What the step's service needs beyond the script (compute.backends.<service>).
    settings: dict = field(default_factory=dict)

    def depends_on(self, producers: dict[str, str]) -> list[str]:
        """Names of the steps this one waits for, in a stable order."""
        names = [producers[data] for data in self.inputs] + self.after
        return list(dict.fromkeys(names))


@dataclass
class PipelineSpec:
    name: str
    experiment: str
    steps: list[StepSpec]

    @property
    def producers(self) -> dict[str, str]:
        """Data name → the step that writes it."""
        return {data: step.name for step in self.steps for data in step.outputs}


def parse_pipeline(text: str) -> PipelineSpec:
    try:
        document = safeyaml.load(text, what="the pipeline file")
    except safeyaml.YamlError as exc:
        raise DefinitionError(str(exc)) from None
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        raise DefinitionError(
            "A pipeline file is a YAML mapping with a `steps:` list (see the format below)."
        )
    unknown = set(document) - {"name", "experiment", "steps", "description"}
    if unknown:
        raise DefinitionError(
            f"Unknown top-level key(s) {', '.join(sorted(unknown))}: a pipeline file has name, "
            "experiment and steps."
        )
    raw_steps = document["steps"]
    if not raw_steps:
        raise DefinitionError("The pipeline has no steps: add at least one under `steps:`.")
    if len(raw_steps) > MAX_STEPS:
        raise DefinitionError(f"A pipeline has at most {MAX_STEPS} steps.")
    steps = [_step(raw, index) for index, raw in enumerate(raw_steps, start=1)]
    spec = PipelineSpec(
        name=_text(document.get("name"), "name", "the pipeline"),
        experiment=_text(document.get("experiment"), "experiment", "the pipeline"),
        steps=steps,
    )
    _check_graph(spec)
    return spec


def _step(raw, index: int) -> StepSpec:
    if not isinstance(raw, dict):
        raise DefinitionError(f"Step {index} is not a mapping: write it as `- name: ...`.")
    name = _text(raw.get("name"), "name", f"step {index}")
    if not NAME_RE.fullmatch(name):
        raise DefinitionError(
            f"Step {index}: name {name!r} must start with a letter and have only letters, "
            "digits, _ and - (at most 64)."
        )
    where = f"step ‘{name}’"
    step_type = str(raw.get("type") or "script").lower()
    if step_type not in STEP_TYPES:
        raise DefinitionError(f"{where}: type {step_type!r} is not one of {', '.join(STEP_TYPES)}.")
    unknown = set(raw) - COMMON_KEYS - KEYS[step_type]
    if unknown:
        allowed = ", ".join(sorted(COMMON_KEYS | KEYS[step_type]))
        raise DefinitionError(
            f"{where}: {', '.join(sorted(unknown))} is not a key of a {step_type} step "
            f"(it has {allowed})."
        )
    compute = _text(raw.get("compute"), "compute", where)
    if not compute:
        raise DefinitionError(f"{where}: say which compute target runs it with `compute:`.")
    step = StepSpec(
        name=name,
        type=step_type,
        compute=compute,
        arguments=_arguments(raw.get("arguments"), where),
        source_directory=_relative(raw.get("source_directory"), "source_directory", where),
        inputs=_names(raw.get("inputs"), "inputs", where),
        outputs=_names(raw.get("outputs"), "outputs", where),
        after=_names(raw.get("after"), "after", where),
    )
    if step_type in ("script", "pyspark"):
        step.entry = _required_path(raw, "script", where)
        step.environment = _text(raw.get("environment"), "environment", where)
        step.max_duration_seconds = _positive(raw.get("max_duration_seconds"), where)
    elif step_type == "databricks":
        _databricks(raw, step, where)
    elif step_type == "datalake":
        step.entry = _required_path(raw, "script", where)
        if step.inputs or step.outputs:
            raise DefinitionError(
                f"{where}: a U-SQL job reads and writes Data Lake Store paths, not files of the "
                "pipeline: remove inputs/outputs and order it with `after:`."
            )
        for key in ("degree_of_parallelism", "priority"):
            if raw.get(key) is not None:
                step.settings[key] = _positive(raw[key], where, key)
    else:
        _batch(raw, step, where)
    return step


def _databricks(raw: dict, step: StepSpec, where: str) -> None:
    kinds = [k for k in ("python_script", "notebook", "jar") if raw.get(k)]
    if len(kinds) != 1:
        raise DefinitionError(
            f"{where}: give exactly one of python_script, notebook (a Python source notebook) "
            "or jar."
        )
    step.entry = _required_path(raw, kinds[0], where)
    step.settings["task"] = {"python_script": "python", "notebook": "notebook", "jar": "jar"}[
        kinds[0]
    ]
    if kinds[0] == "jar":
        main_class = _text(raw.get("main_class"), "main_class", where)
        if not main_class:
            raise DefinitionError(f"{where}: a jar step needs `main_class:`.")
        step.settings["main_class"] = main_class
    if raw.get("cluster_id") and raw.get("new_cluster"):
        raise DefinitionError(
            f"{where}: give either cluster_id (an existing cluster) or new_cluster, not both."
        )
    if raw.get("cluster_id"):
        step.settings["cluster_id"] = _text(raw["cluster_id"], "cluster_id", where)
    if raw.get("new_cluster") is not None:
        cluster = raw["new_cluster"]
        if not isinstance(cluster, dict):
            raise DefinitionError(
                f"{where}: new_cluster is a mapping with spark_version, node_type_id and "
                "num_workers."
            )
        spec = {
            "spark_version": _text(cluster.get("spark_version"), "spark_version", where),
            "node_type_id": _text(
                cluster.get("node_type_id") or cluster.get("node_type"), "node_type_id", where
            ),
            "num_workers": _count(cluster.get("num_workers", 1), where),
        }
        missing = [k for k in ("spark_version", "node_type_id") if not spec[k]]
        if missing:
            raise DefinitionError(
                f"{where}: new_cluster needs {' and '.join(missing)} (e.g. 13.3.x-scala2.12, "
                "Standard_DS3_v2)."
            )
        step.settings["new_cluster"] = spec
    if raw.get("timeout_seconds") is not None:
        step.settings["timeout_seconds"] = _positive(raw["timeout_seconds"], where)


def _batch(raw: dict, step: StepSpec, where: str) -> None:
    command = raw.get("command")
    if command and raw.get("script"):
        raise DefinitionError(f"{where}: give either command or script (+ arguments), not both.")
    if command:
        if not isinstance(command, str):
            raise DefinitionError(f"{where}: command is one command line, as a string.")
        step.settings["command"] = command
    elif raw.get("script"):
        step.entry = _required_path(raw, "script", where)
    else:
        raise DefinitionError(
            f"{where}: give the task's command line (`command: python3 report.py`) or a script."
        )
    if raw.get("pool"):
        step.settings["pool"] = _text(raw["pool"], "pool", where)


def _check_graph(spec: PipelineSpec) -> None:
    names = [s.name for s in spec.steps]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DefinitionError(f"Two steps are called {duplicates[0]}: give each step its own name.")
    producers: dict[str, str] = {}
    for step in spec.steps:
        for data in step.outputs:
            if data in producers:
                raise DefinitionError(
                    f"Both ‘{producers[data]}’ and ‘{step.name}’ write the output {data}: give "
                    "each output its own name."
                )
            producers[data] = step.name
    for step in spec.steps:
        for data in step.inputs:
            if data not in producers:
                raise DefinitionError(
                    f"step ‘{step.name}’: no step has {data} among its outputs; inputs name "
                    "another step's outputs."
                )
            if producers[data] == step.name:
                raise DefinitionError(f"step ‘{step.name}’ cannot read its own output {data}.")
        for other in step.after:
            if other not in names:
                raise DefinitionError(f"step ‘{step.name}’: after names no step called {other}.")
    # A cycle would leave its steps waiting for each other forever.
    state: dict[str, int] = {}
    by_name = {s.name: s for s in spec.steps}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " → ".join(path[path.index(name) :] + [name])
            raise DefinitionError(f"The steps wait for each other in a circle: {cycle}.")
        state[name] = 1
        for dep in by_name[name].depends_on(producers):
            visit(dep, [*path, name])
        state[name] = 2

    for name in names:
        visit(name, [])


def _text(value, key: str, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise DefinitionError(f"{where}: {key} is a single value, not a list or mapping.")
    return str(value).strip()


def _required_path(raw: dict, key: str, where: str) -> str:
    path = _relative(raw.get(key), key, where)
    if not path:
        raise DefinitionError(f"{where}: say which file it runs with `{key}:`.")
    return path


def _relative(value, key: str, where: str) -> str:
    text = _text(value, key, where).strip("/") if value else ""
    if not text:
        return ""
    parts = PurePosixPath(text).parts
    if ".." in parts or text.startswith("~"):
        raise DefinitionError(f"{where}: {key} must be a path inside the uploaded source folder.")
    return str(PurePosixPath(*parts))


def _names(value, key: str, where: str) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    names = []
    for item in items:
        name = str(item).strip()
        if not NAME_RE.fullmatch(name):
            raise DefinitionError(
                f"{where}: {key} entry {name!r} must start with a letter and have only letters, "
                "digits, _ and -."
            )
        names.append(name)
    return list(dict.fromkeys(names))


def _arguments(value, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise DefinitionError(f"{where}: arguments cannot be split ({exc}).") from None
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return [str(v) for v in value]
    raise DefinitionError(f"{where}: arguments is a list, e.g. [--epochs, 10].")


def _positive(value, where: str, key: str = "a duration") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(f"{where}: {key} must be a whole number of at least 1.")
    return value


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DefinitionError(f"{where}: num_workers must be a whole number (0 or more).")
    return value
