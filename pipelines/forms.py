from __future__ import annotations

from django import forms

from pipelines.services import MAX_DEFINITION_BYTES
from runs import selectors
from runs.forms import FolderField, SourceFolderForm
from runs.services.submit import parse_tags
from studio.errors import ServiceError

DEFINITION_HELP = (
    "A YAML file with a <code>steps:</code> list. Each step has a <code>name</code>, a "
    "<code>type</code> (script, pyspark, databricks, datalake or batch), the "
    "<code>compute</code> target that runs it, what it runs (<code>script</code>; for "
    "Databricks <code>python_script</code>, <code>notebook</code> or <code>jar</code> + "
    "<code>main_class</code>, on <code>cluster_id</code> or a <code>new_cluster</code>; for "
    "Batch a <code>command</code> on a <code>pool</code>), <code>arguments</code>, and the data "
    "it passes on: <code>outputs: [words]</code> are the files it writes to "
    "<code>./outputs/words/</code>; a later step with <code>inputs: [words]</code> finds them in "
    "<code>./inputs/words/</code> and starts once they exist. <code>after: [step]</code> orders "
    "steps without data. The format is shown below."
)


class PipelineSubmitForm(SourceFolderForm):
    definition_file = forms.FileField(
        label="Pipeline definition file",
        required=False,
        help_text=DEFINITION_HELP,
    )
    definition = forms.CharField(
        label="…or paste the definition",
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false"}),
        help_text="The same YAML, instead of uploading the file.",
    )
    experiment = forms.CharField(
        required=False,
        max_length=250,
        help_text="The experiment the pipeline run belongs to; empty uses the file's "
        "<code>experiment:</code>.",
        widget=forms.TextInput(attrs={"list": "experiment-names", "autocomplete": "off"}),
    )
    source_folder = FolderField(
        label="Source folder",
        required=False,
        help_text="The folder with every step's scripts; a step's <code>source_directory</code> "
        "picks a subfolder. .amlignore (or else .gitignore) decides what is left out.",
    )
    tags = forms.CharField(
        required=False, help_text="name=value pairs separated by commas, e.g. owner=data-team."
    )

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, workspace=workspace, **kwargs)
        self.experiment_names = list(
            selectors.experiment_list(workspace=workspace).values_list("name", flat=True)
        )

    def clean_definition_file(self):
        upload = self.cleaned_data.get("definition_file")
        if not upload:
            return ""
        if upload.size > MAX_DEFINITION_BYTES:
            raise forms.ValidationError(
                "A pipeline definition is a small YAML file: this one is too big."
            )
        try:
            return upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "This is not a text file: choose the pipeline's .yml file."
            ) from None

    def clean_tags(self):
        try:
            return parse_tags(self.cleaned_data["tags"])
        except ServiceError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        super().clean()
        data = self.cleaned_data
        text = data.get("definition_file") or data.get("definition") or ""
        if not text.strip() and "definition_file" not in self.errors:
            self.add_error(
                "definition_file", "Choose the pipeline's YAML file (or paste its text below)."
            )
        data["definition_text"] = text
        return data
