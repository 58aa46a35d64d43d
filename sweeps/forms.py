from __future__ import annotations

from typing import cast

from django import forms

from compute.models import LOCAL_TARGET_NAME
from runs import selectors
from runs.forms import RunSubmitForm
from runs.services.environments import DEFAULT_ENVIRONMENT
from sweeps.services import MAX_DEFINITION_BYTES

HYPERDRIVE_HELP = (
    "The <code>hdconfig.yml</code> of <code>az ml run submit-hyperdrive</code>: "
    "<code>sampling</code> (type random, grid or bayesian, and a <code>parameter_space</code> of "
    "script arguments, each with an <code>expression</code> and its <code>values</code>), "
    "<code>policy</code> (early termination), <code>primary_metric_name</code>, "
    "<code>primary_metric_goal</code>, <code>max_total_runs</code>, "
    "<code>max_concurrent_runs</code> and <code>max_duration_minutes</code>. The format is "
    "shown below."
)


class SweepSubmitForm(RunSubmitForm):
    """The run form's source folder, script, target and environment, and the hdconfig file."""

    hyperdrive_config = forms.FileField(label="HyperDrive config file", help_text=HYPERDRIVE_HELP)
    # Each child runs on one node with the framework its target takes.
    LEFT_OUT = ("framework", "node_count", "max_duration_seconds", "metric_patterns", "runconfig")

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, workspace=workspace, **kwargs)
        for name in self.LEFT_OUT:
            del self.fields[name]
        cast(forms.ChoiceField, self.fields["target"]).choices = [
            ("", f"— {LOCAL_TARGET_NAME}")
        ] + [
            (t.name, f"{t.name} ({t.get_kind_display()})")
            for t in selectors.runnable_targets(workspace=workspace)
        ]
        self.fields["target"].help_text = (
            "Where every child runs: this server (local), an attached VM, a cluster, or an "
            "HDInsight / Spark head node."
        )
        environment = cast(forms.ChoiceField, self.fields["environment"])
        # The field keeps its choices as a list (normalized when set).
        choices = cast(list, environment.choices)
        environment.choices = [("", f"— {DEFAULT_ENVIRONMENT}"), *choices[1:]]
        self.fields["environment"].help_text = (
            "The Python every child runs with (see Environments). Left empty: "
            f"{DEFAULT_ENVIRONMENT}."
        )
        self.fields[
            "arguments"
        ].help_text = "Passed to every child before its sampled hyperparameters, e.g. --epochs 10."

    def clean_hyperdrive_config(self):
        upload = self.cleaned_data["hyperdrive_config"]
        if upload.size > MAX_DEFINITION_BYTES:
            raise forms.ValidationError(
                "An hdconfig file is a small YAML file: this one is too big."
            )
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "This is not a text file: choose the sweep's hdconfig.yml."
            ) from None
