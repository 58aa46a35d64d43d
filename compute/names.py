"""Compute target names: the rule, the check every way of creating a target makes, and the
form field and validation every wizard shares."""

from __future__ import annotations

import re

from django import forms

from compute.models import ComputeTarget
from studio.models import Workspace

COMPUTE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,15}")
COMPUTE_NAME_RULE = "2–16 characters: a letter first, then letters, digits or hyphens"
# Words the compute pages and /api/v1/computes/... use in their own URLs.
RESERVED_COMPUTE_NAMES = {
    "new",
    "engines",
    "cluster",
    "attach",
    "vm",
    "keypair",
    "databricks",
    "datalake",
    "batch",
}
# The error code of a name another target of the workspace has: the API answers 409.
NAME_TAKEN = "name_taken"


def name_taken_message(name: str) -> str:
    return f"This workspace already has a compute target called {name}: choose another name."


def compute_name_problem(*, workspace, name: str) -> tuple[str, str] | None:
    """What is wrong with `name` for a new target of the workspace: (code, message)."""
    if not COMPUTE_NAME_RE.fullmatch(name):
        return "invalid", f"A compute name is {COMPUTE_NAME_RULE}."
    if name.lower() in RESERVED_COMPUTE_NAMES:
        return "reserved", f"“{name}” is used by the compute pages themselves: choose another name."
    if ComputeTarget.objects.filter(workspace=workspace, name__iexact=name).exists():
        return NAME_TAKEN, name_taken_message(name)
    return None


def compute_name_field(used_by: str = "Runs name it as their target.") -> forms.CharField:
    return forms.CharField(
        label="Compute name",
        max_length=16,
        help_text=f"{COMPUTE_NAME_RULE}; unique in this workspace. {used_by}",
    )


class ComputeNameMixin:
    """`clean_name` for a wizard form with a `workspace` and a compute_name_field()."""

    workspace: Workspace
    cleaned_data: dict

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        problem = compute_name_problem(workspace=self.workspace, name=name)
        if problem:
            code, message = problem
            raise forms.ValidationError(message, code=code)
        return name
