"""The verbs of `az ml`, under Trainyard's name: `trainyard <group> <verb> [options]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TypeAlias

from cli import computes, downloads, runs, sweeps, workspaces
from cli.connection import PROG, Api, CliError, login_save
from cli.context import Context

Verb = Callable[[Context], int]
# Not subscriptable at run time: a string, read only by the type checker.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def login(ctx: Context) -> int:
    api = Api(url=ctx.args.url, token=ctx.args.token)
    workspaces = api.get("/workspaces")
    path = login_save(url=api.url, token=api.token)
    names = ", ".join(w["slug"] for w in workspaces) or "none yet"
    print(f"Logged in to {api.url} (workspaces: {names}); saved to {path}.")
    return 0


def connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the studio's address (else TRAINYARD_URL, else the login)")
    common.add_argument("--token", help="a personal access token (else TRAINYARD_TOKEN)")
    common.add_argument(
        "-w", "--workspace", help="workspace slug (else the folder's, else your only one)"
    )
    return common


def output_option() -> argparse.ArgumentParser:
    shown = argparse.ArgumentParser(add_help=False)
    shown.add_argument("-o", "--output", choices=("table", "json"), default="table")
    return shown


class Verbs:
    """Builds the argparse tree: each leaf knows the function that runs it."""

    def __init__(self, top: argparse.ArgumentParser) -> None:
        self.groups = top.add_subparsers(dest="group", required=True, metavar="GROUP")
        self.common = connection_options()
        self.shown = output_option()

    def group(self, name: str, help: str) -> Subparsers:
        parser = self.groups.add_parser(name, help=help)
        return parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(
        self, group: Subparsers, name: str, handler: Verb, help: str, shown: bool = False
    ) -> argparse.ArgumentParser:
        parents = [self.common, self.shown] if shown else [self.common]
        parser = group.add_parser(name, help=help, description=help, parents=parents)
        parser.set_defaults(handler=handler)
        return parser


def experiment_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument(
        "-e",
        "--experiment-name",
        dest="experiment",
        required=required,
        help="experiment name (else the one `folder attach` saved)",
    )


def login_parser(verbs: Verbs) -> None:
    parser = verbs.groups.add_parser(
        "login", help="save the studio's address and your token", parents=[verbs.common]
    )
    parser.set_defaults(handler=login)


def folder_parsers(verbs: Verbs) -> None:
    folder = verbs.group("folder", "attach this folder to an experiment")
    attach = verbs.verb(
        folder,
        "attach",
        runs.folder_attach,
        "save the workspace and experiment the other verbs use here in .azureml/config.json",
    )
    experiment_option(attach, required=True)


def experiment_parsers(verbs: Verbs) -> None:
    experiment = verbs.group("experiment", "experiments")
    create = verbs.verb(experiment, "create", runs.experiment_create, "create an experiment")
    create.add_argument("-n", "--experiment-name", "--name", dest="name", required=True)
    verbs.verb(experiment, "list", runs.experiment_list, "the workspace's experiments", shown=True)


def credential_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", "-n", required=True, help="the compute target's name")
    parser.add_argument("--address", "-a", required=True, help="host name or IP address")
    parser.add_argument("--username", "-u", required=True)
    parser.add_argument("--ssh-port", type=int, default=22)
    login_with = parser.add_mutually_exclusive_group(required=True)
    login_with.add_argument("--password", "-p")
    login_with.add_argument("--private-key-file", help="the SSH private key to log in with")
    parser.add_argument("--passphrase", help="the private key's passphrase")
    parser.add_argument(
        "--no-wait", action="store_true", help="return before the target has been checked"
    )


def computetarget_parsers(verbs: Verbs) -> None:
    computetarget = verbs.group("computetarget", "compute targets")
    verbs.verb(
        computetarget,
        "list",
        computes.computetarget_list,
        "the workspace's compute targets",
        shown=True,
    )
    show = verbs.verb(
        computetarget, "show", computes.computetarget_show, "one compute target", shown=True
    )
    show.add_argument("--name", "-n", required=True)
    detach = verbs.verb(
        computetarget,
        "detach",
        computes.computetarget_detach,
        "detach a target (a cluster is deleted with its nodes)",
    )
    detach.add_argument("--name", "-n", required=True)

    attach = computetarget.add_parser("attach", help="attach a machine over SSH")
    kinds = attach.add_subparsers(dest="kind", required=True, metavar="KIND")
    remote = verbs.verb(
        kinds,
        "remote",
        computes.computetarget_attach_remote,
        "attach a virtual machine over SSH",
        shown=True,
    )
    credential_options(remote)
    hdinsight = verbs.verb(
        kinds,
        "hdinsight",
        computes.computetarget_attach_hdinsight,
        "attach an HDInsight cluster's or any Spark head node over SSH",
        shown=True,
    )
    credential_options(hdinsight)
    hdinsight.add_argument(
        "--spark-master", help="e.g. yarn, local[2] (else what the cluster uses)"
    )

    create = computetarget.add_parser("create", help="create a managed compute cluster")
    kinds = create.add_subparsers(dest="kind", required=True, metavar="KIND")
    amlcompute = verbs.verb(
        kinds,
        "amlcompute",
        computes.computetarget_create_amlcompute,
        "create an autoscaling compute cluster",
        shown=True,
    )
    amlcompute.add_argument("--name", "-n", required=True)
    amlcompute.add_argument("--vm-size", "-s", required=True, help="e.g. STANDARD_D2_V2")
    amlcompute.add_argument("--max-nodes", "-M", type=int, required=True)
    amlcompute.add_argument("--min-nodes", "-m", type=int, default=0)
    amlcompute.add_argument("--idle-seconds-before-scaledown", type=int, default=120)
    amlcompute.add_argument(
        "--vm-priority", "-p", choices=("dedicated", "lowpriority"), default="dedicated"
    )
    amlcompute.add_argument("--no-wait", action="store_true", help="return while it is created")


def script_options(submit: argparse.ArgumentParser, what: str) -> None:
    """What `run submit-script` and `run submit-hyperdrive` share: the script, its folder, the
    runconfig and target."""
    experiment_option(submit)
    submit.add_argument(
        "-c",
        "--run-configuration-name",
        dest="runconfig",
        help="a runconfig: NAME for .azureml/NAME.runconfig, or a file's path",
    )
    submit.add_argument("-t", "--target", help="the compute target (overrides the runconfig's)")
    submit.add_argument("--source-directory", default=".", help="the folder to upload (default: .)")
    submit.add_argument("--no-wait", action="store_true", help=f"print the {what}'s id and return")
    submit.add_argument("script", nargs="?", help="the entry script (else the runconfig's)")
    submit.add_argument("arguments", nargs=argparse.REMAINDER, help="the script's arguments")


def run_parsers(verbs: Verbs) -> None:
    run = verbs.group("run", "runs")
    submit = verbs.verb(
        run,
        "submit-script",
        runs.run_submit_script,
        "submit a script with the folder it is in, and show its output until it ends",
    )
    script_options(submit, "run")
    hyperdrive = verbs.verb(
        run,
        "submit-hyperdrive",
        sweeps.run_submit_hyperdrive,
        "submit a hyperparameter sweep of a script, and show its children until it ends",
    )
    hyperdrive.add_argument(
        "--hyperdrive-configuration-name",
        dest="hyperdrive_config",
        required=True,
        help="the sweep's hdconfig.yml: sampling, policy, primary metric and run counts",
    )
    script_options(hyperdrive, "sweep")

    listed = verbs.verb(run, "list", runs.run_list, "runs, newest first", shown=True)
    experiment_option(listed)
    for name, verb, help in (
        ("show", runs.run_show, "a run's status, exit code and error (a sweep's children)"),
        ("cancel", runs.run_cancel, "stop a run"),
        ("logs", runs.run_logs, "a run's output: stdout to stdout, stderr to stderr"),
    ):
        parser = verbs.verb(run, name, verb, help, shown=name == "show")
        parser.add_argument("--run", "-r", type=int, required=True, help="the run's id")
        if name == "logs":
            parser.add_argument("--follow", "-f", action="store_true", help="until the run ends")
            parser.add_argument("--stream", default="", help="one log stream, e.g. node-1.stdout")

    download = verbs.verb(
        run,
        "download",
        downloads.run_download,
        "download a run's files into a folder: its outputs and logs, or its snapshot",
    )
    download.add_argument("--run", "-r", type=int, required=True, help="the run's id")
    what = download.add_mutually_exclusive_group()
    what.add_argument("--outputs", action="store_true", help="only ./outputs")
    what.add_argument("--logs", action="store_true", help="only ./logs")
    what.add_argument(
        "--snapshot", action="store_true", help="the source folder the run was submitted with"
    )
    download.add_argument(
        "-o", "--output-dir", dest="directory", required=True, help="the folder to write into"
    )
    download.add_argument(
        "--overwrite", action="store_true", help="replace files that are there already"
    )


def workspace_parsers(verbs: Verbs) -> None:
    workspace = verbs.group("workspace", "workspaces and their members")
    create = verbs.verb(
        workspace,
        "create",
        workspaces.workspace_create,
        "create a workspace; you are its Owner",
        shown=True,
    )
    create.add_argument("name", help='e.g. "Vision research"')
    verbs.verb(
        workspace, "list", workspaces.workspace_list, "your workspaces and roles", shown=True
    )
    verbs.verb(workspace, "show", workspaces.workspace_show, "one workspace (-w SLUG)", shown=True)
    member = workspace.add_parser("member", help="the workspace's members")
    members = member.add_subparsers(dest="member_verb", required=True, metavar="VERB")
    add = verbs.verb(
        members,
        "add",
        workspaces.member_add,
        "add a user with a role, or change a member's role (Owner only)",
    )
    add.add_argument("user", help="their user name")
    add.add_argument("--role", required=True, choices=("owner", "contributor", "reader"))
    add.add_argument("--email", help="their account's e-mail address (needed unless you are staff)")
    remove = verbs.verb(members, "remove", workspaces.member_remove, "remove a member (Owner only)")
    remove.add_argument("user", help="their user name")
    verbs.verb(members, "list", workspaces.member_list, "members and roles", shown=True)


def pipeline_parsers(verbs: Verbs) -> None:
    pipeline = verbs.group("pipeline", "pipelines")
    submit = verbs.verb(
        pipeline, "submit", runs.pipeline_submit, "submit a pipeline definition", shown=True
    )
    submit.add_argument("--definition", "-y", required=True, help="the pipeline's YAML file")
    submit.add_argument("--source-directory", default=".", help="the steps' scripts (default: .)")
    experiment_option(submit)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description="Trainyard from the command line, with the verbs of `az ml`."
    )
    verbs = Verbs(top)
    login_parser(verbs)
    folder_parsers(verbs)
    experiment_parsers(verbs)
    computetarget_parsers(verbs)
    run_parsers(verbs)
    pipeline_parsers(verbs)
    workspace_parsers(verbs)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.handler(Context(args))
    except CliError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
