"""What every verb needs: the API, the workspace it works in, and the folder's defaults."""

from __future__ import annotations

import argparse
import shlex
import sys
from functools import cached_property
from pathlib import Path

from cli.connection import PROG, Api, CliError
from cli.project import project_config, runconfig_upload, source_upload


class Context:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.project = project_config(Path.cwd())

    @cached_property
    def api(self) -> Api:
        return Api(url=self.args.url, token=self.args.token)

    @cached_property
    def workspace(self) -> str:
        """-w, else the attached folder's workspace, else the caller's only workspace."""
        chosen = self.args.workspace or self.project.get("workspace_name")
        if chosen:
            return chosen
        slugs = [w["slug"] for w in self.api.get("/workspaces")]
        if len(slugs) == 1:
            return slugs[0]
        if not slugs:
            raise CliError(
                f"You belong to no workspace yet: create one with `{PROG} workspace create "
                "NAME`, or ask an administrator to add you to one."
            )
        raise CliError(
            f"You are in several workspaces ({', '.join(slugs)}): say which with -w SLUG, or "
            f"attach this folder with `{PROG} folder attach -w SLUG -e EXPERIMENT`."
        )

    @property
    def params(self) -> dict:
        return {"workspace": self.workspace}

    def experiment(self, required: bool = True) -> str:
        """-e, else the experiment the folder is attached to."""
        name = self.args.experiment or self.project.get("experiment_name") or ""
        if required and not name:
            raise CliError(
                f"Say which experiment: -e NAME, or attach this folder once with "
                f"`{PROG} folder attach -e NAME`."
            )
        return name

    @property
    def json(self) -> bool:
        return getattr(self.args, "output", "table") == "json"

    def run_fields(self) -> dict:
        """What `run submit-script` and `run submit-hyperdrive` send besides the files."""
        return {
            "experiment": self.experiment(),
            "target": self.args.target or "",
            "entry_script": self.args.script or "",
            "arguments": shlex.join(self.args.arguments),
        }

    def submit_folder(self, endpoint: str, files: list | None = None) -> dict:
        """POST the submit verbs' fields, the source folder (only the files the workspace
        lacks), the runconfig and `files` to `endpoint`; says on stderr what was uploaded."""
        folder = Path(self.args.source_directory)
        source = source_upload(self.api, folder, self.params)
        sent = [*source.files, *(files or [])]
        if self.args.runconfig:
            sent.append(("runconfig", runconfig_upload(self.args.runconfig, folder)))
        created = self.api.post(
            endpoint, params=self.params, data=self.run_fields() | source.fields, files=sent
        )
        print(source.summary, file=sys.stderr)
        return created
