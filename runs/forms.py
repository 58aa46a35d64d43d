from __future__ import annotations

import json
import shlex
from typing import cast

from django import forms
from django.conf import settings

from runs import selectors
from runs.models import EnvironmentKind
from runs.runconfig import RunConfigError, parse_runconfig
from runs.services.environments import DEFAULT_ENVIRONMENT
from runs.services.experiments import experiment_name_problem
from runs.services.submit import SubmitRequest, parse_metric_patterns, parse_tags
from runs.snapshots import upload_plan
from runs.snapshots.archives import strip_common_folder
from runs.snapshots.capture import StoredFile
from runs.snapshots.git import GIT_FILES
from studio.blobs import SHA256
from studio.errors import ServiceError
from studio.units import human_bytes

MAX_RUNCONFIG_BYTES = 256 * 1024
# The page sends packed-refs only below 1 MB; HEAD, config and a ref are tiny.
MAX_GIT_FILES_BYTES = 2 * 1024 * 1024


class ExperimentForm(forms.Form):
    name = forms.CharField(
        max_length=250,
        help_text="Letters, digits, dashes and underscores, e.g. mnist-baseline.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        problem = experiment_name_problem(name)
        if problem:
            raise forms.ValidationError(problem)
        return name


class EnvironmentForm(forms.Form):
    name = forms.CharField(
        max_length=255,
        help_text="Saving a name that exists adds a new version of it, e.g. sklearn-1.5.",
    )
    kind = forms.ChoiceField(
        label="Kind",
        choices=[
            (EnvironmentKind.USER_MANAGED, "User-managed: use an interpreter on the target as is"),
            (EnvironmentKind.SYSTEM_MANAGED, "System-managed: build it from a dependency list"),
        ],
        widget=forms.RadioSelect,
        initial=EnvironmentKind.USER_MANAGED,
    )
    interpreter_path = forms.CharField(
        label="Python interpreter",
        required=False,
        help_text="User-managed only: the interpreter on the target, e.g. "
        "/opt/conda/envs/tf/bin/python. Empty means python3 on the target's PATH.",
    )
    pip_requirements = forms.CharField(
        label="pip requirements",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="System-managed: a requirements.txt. Built once per target in a venv and "
        "reused by every run with the same list.",
    )
    conda_yaml = forms.CharField(
        label="conda environment file",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="System-managed, instead of pip: an environment.yml; the target needs conda.",
    )
    docker_image = forms.CharField(
        label="Docker base image",
        required=False,
        help_text="Optional: run in this image (CPU or GPU) on targets with Docker, e.g. "
        "python:3.11-slim. The image must already be on the target.",
    )
    docker_gpus = forms.BooleanField(
        label="Give the container the target's GPUs",
        required=False,
        help_text="With a Docker image: the run's container gets every GPU of the VM "
        "(docker run --gpus all). The VM needs NVIDIA GPUs and the NVIDIA Container Toolkit.",
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class FolderInput(forms.ClearableFileInput):
    allow_multiple_selected = True

    def __init__(self, attrs=None):
        super().__init__({"webkitdirectory": True, "multiple": True, **(attrs or {})})


class FolderField(forms.FileField):
    """Every file of a chosen folder (empty files included: __init__.py often is)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("widget", FolderInput())
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        if not data:
            return []
        return list(data) if isinstance(data, (list, tuple)) else [data]


class SourceFolderForm(forms.Form):
    """The source folder of a submit (run, sweep, pipeline): chosen in the browser, or an
    archive. static/js/folder_upload.js fills the hidden fields on the page."""

    source_folder = FolderField(
        label="Source folder",
        required=False,
        help_text="Choose or drop the folder with your script. .amlignore (or else .gitignore) "
        "decides what is left out; only changed files are uploaded to the target again.",
    )
    source_paths = forms.CharField(required=False, widget=forms.HiddenInput)
    # The SHA-256 of each file of source_paths, in the same order, when the page hashed the
    # folder: it then sends only the files the workspace does not hold yet.
    source_hashes = forms.CharField(required=False, widget=forms.HiddenInput)
    # The signed answer to the page's question about those hashes (runs.snapshots.upload_plan): the
    # sizes of the files the workspace holds, which the page does not send.
    source_plan = forms.CharField(required=False, widget=forms.HiddenInput)
    # JSON: the small files of the folder's .git/ (HEAD, config, the branch's ref) that
    # name its repository, branch and commit; the page leaves .git/ itself out.
    source_git = forms.CharField(required=False, widget=forms.HiddenInput)
    source_archive = forms.FileField(
        label="…or an archive",
        required=False,
        help_text="A .zip or .tar.gz of the source folder, instead of choosing the folder.",
    )

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_source_archive(self):
        archive = self.cleaned_data.get("source_archive")
        if archive and archive.size > settings.SNAPSHOT_MAX_BYTES:
            raise forms.ValidationError(
                f"The archive is {human_bytes(archive.size)}, over the snapshot limit of "
                f"{human_bytes(settings.SNAPSHOT_MAX_BYTES)}."
            )
        return archive

    def folder_files(self) -> list[tuple[str, object]]:
        """The chosen folder's files with their paths.

        Browsers send bare file names, so the page numbers the files and sends
        their paths in `source_paths`; without that script, the names are used.
        """
        files = self.cleaned_data.get("source_folder") or []
        # Form submission turns the field's newlines into CRLF.
        paths = [p for p in (self.cleaned_data.get("source_paths") or "").splitlines() if p]
        hashes = self.cleaned_data.get("source_hashes") or []
        numbered = all(f.name.isdigit() and int(f.name) < len(paths) for f in files)
        if paths and numbered and len(hashes) == len(paths):
            # Files the workspace holds already stay behind: their hash stands for them,
            # with the size the page's plan names, when it has a valid one.
            sent = {int(f.name): f for f in files}
            held = upload_plan.plan_sizes(
                self.cleaned_data.get("source_plan") or "", workspace=self.workspace, hashes=hashes
            )
            named = paths
            sources: list = [
                sent[i] if i in sent else (StoredFile(sha, held[sha]) if sha in held else sha)
                for i, sha in enumerate(hashes)
            ]
        elif paths and numbered:
            named = [paths[int(f.name)] for f in files]
            sources = files
        elif len(paths) == len(files):
            named, sources = paths, files
        else:
            named, sources = [f.name for f in files], files
        return list(zip(strip_common_folder(named), sources, strict=True))

    def upload_summary(self, files: list[tuple[str, object]]) -> str:
        """How much of the chosen folder (`folder_files()`) the page had to send."""
        if not files:
            return ""
        sent = len(self.cleaned_data.get("source_folder") or [])
        return f"{sent} of {len(files)} files uploaded; the others were stored already."

    def clean_source_hashes(self):
        hashes = (self.cleaned_data.get("source_hashes") or "").split()
        if any(not SHA256.fullmatch(h) for h in hashes):
            raise forms.ValidationError(
                "The page sent a malformed file hash: reload the page and choose the folder again."
            )
        return hashes

    def clean_source_git(self) -> dict[str, str]:
        text = self.cleaned_data.get("source_git") or ""
        if not text:
            return {}
        try:
            files = json.loads(text)
        except ValueError:
            files = None
        if (
            not isinstance(files, dict)
            or len(text) > MAX_GIT_FILES_BYTES
            or not all(isinstance(v, str) and GIT_FILES.fullmatch(k) for k, v in files.items())
        ):
            raise forms.ValidationError(
                "The page sent malformed git facts: reload the page and choose the folder again."
            )
        return files


class RunSubmitForm(SourceFolderForm):
    experiment = forms.CharField(
        required=False,
        max_length=250,
        help_text="An existing experiment, or a new name to create one.",
        widget=forms.TextInput(attrs={"list": "experiment-names", "autocomplete": "off"}),
    )
    target = forms.ChoiceField(
        label="Compute target",
        required=False,
        help_text="Where the script runs: this server (local), an attached VM, a cluster, or an "
        "HDInsight / Spark head node as a PySpark job. On a Databricks, Data Lake or Batch "
        "target it runs as a one-step pipeline. Left empty: the runconfig's, else local.",
    )
    framework = forms.ChoiceField(
        label="Framework",
        required=False,
        choices=[
            ("", "Automatic: PySpark on HDInsight / Spark targets, else Python"),
            ("Python", "Python: run the entry script with the environment's interpreter"),
            ("PySpark", "PySpark: spark-submit the entry script (HDInsight / Spark targets)"),
        ],
        help_text="PySpark jobs run with spark-submit on the head node of an HDInsight / Spark "
        "target, with the master set on that target; their driver log streams live.",
    )
    entry_script = forms.CharField(
        label="Entry script",
        required=False,
        max_length=512,
        help_text="The script to run, relative to the source folder, e.g. train.py.",
        widget=forms.TextInput(attrs={"list": "entry-scripts", "autocomplete": "off"}),
    )
    arguments = forms.CharField(
        required=False,
        help_text="Passed to the script as in a shell, e.g. --epochs 10 --lr 0.01.",
    )
    environment = forms.ChoiceField(
        required=False,
        help_text="The Python the script runs with (see Environments). Left empty: the "
        f"runconfig's, else {DEFAULT_ENVIRONMENT}.",
    )
    node_count = forms.IntegerField(
        label="Node count",
        required=False,
        min_value=1,
        help_text=(
            "Nodes the run uses. More than one needs a compute cluster: the script runs on "
            "each node, with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. Left empty: "
            "the runconfig's, else 1."
        ),
    )
    max_duration_seconds = forms.IntegerField(
        label="Max run duration (seconds)",
        required=False,
        min_value=1,
        help_text="Optional: the run is stopped (SIGTERM, then SIGKILL) after this long.",
    )
    tags = forms.CharField(
        required=False, help_text="name=value pairs separated by commas, e.g. model=resnet, lr=0.1."
    )
    metric_patterns = forms.CharField(
        label="Metrics from output",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional, one regular expression per line: each named group becomes a metric "
        "read from stdout, e.g. loss=(?P&lt;loss&gt;[0-9.]+). Scripts can also log metrics "
        'with <code>from trainyard import run; run.log("loss", 0.3)</code>.',
    )
    runconfig = forms.FileField(
        label="Runconfig file",
        required=False,
        help_text="Optional: an az ml runconfig (.azureml/&lt;target&gt;.runconfig). It fills the "
        "fields you leave empty: script, arguments, target, maxRunDurationSeconds, nodeCount, "
        "environment.",
    )

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, workspace=workspace, **kwargs)
        targets = list(selectors.runnable_targets(workspace=workspace))
        targets += list(selectors.pipeline_step_targets(workspace=workspace))
        cast(forms.ChoiceField, self.fields["target"]).choices = [
            ("", "— the runconfig's, else local")
        ] + [(t.name, f"{t.name} ({t.get_kind_display()})") for t in targets]
        self.environments = {str(e.pk): e for e in selectors.environment_list(workspace=workspace)}
        cast(forms.ChoiceField, self.fields["environment"]).choices = [
            ("", f"— the runconfig's, else {DEFAULT_ENVIRONMENT}")
        ] + [(pk, f"{e} ({e.get_kind_display()})") for pk, e in self.environments.items()]
        self.experiment_names = list(
            selectors.experiment_list(workspace=workspace).values_list("name", flat=True)
        )

    def clean_arguments(self):
        try:
            return shlex.split(self.cleaned_data["arguments"] or "")
        except ValueError as exc:
            raise forms.ValidationError(
                f"The arguments cannot be split like a shell would ({exc}): check the quotes."
            ) from None

    def clean_tags(self):
        try:
            return parse_tags(self.cleaned_data["tags"])
        except ServiceError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_metric_patterns(self):
        try:
            return parse_metric_patterns(self.cleaned_data["metric_patterns"])
        except ServiceError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_runconfig(self):
        upload = self.cleaned_data.get("runconfig")
        if not upload:
            return None
        if upload.size > MAX_RUNCONFIG_BYTES:
            raise forms.ValidationError(
                "A runconfig file is a small YAML file: this one is too big."
            )
        try:
            return parse_runconfig(upload.read().decode("utf-8", errors="replace"))
        except RunConfigError as exc:
            raise forms.ValidationError(str(exc)) from None

    def submit_request(self) -> SubmitRequest:
        data = self.cleaned_data
        request = SubmitRequest(
            experiment=data.get("experiment") or "",
            target=data.get("target") or "",
            entry_script=(data.get("entry_script") or "").strip(),
            arguments=data.get("arguments") or [],
            environment=self.environments.get(data.get("environment") or ""),
            node_count=data.get("node_count"),
            max_duration_seconds=data.get("max_duration_seconds"),
            tags=data.get("tags") or {},
            metric_patterns=data.get("metric_patterns") or [],
            framework=data.get("framework") or "",
        )
        if data.get("runconfig") is not None:
            request.apply_runconfig(data["runconfig"])
        return request
