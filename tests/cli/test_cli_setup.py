"""The command line (`python -m cli`) setting things up, as a script runs it against
`manage.py up`: logging in, workspaces and their members, attaching and creating compute,
and the errors a user meets on the way.
"""

import json
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import FAIL, cli
from tests.support.runs import write_tree

pytestmark = pytest.mark.e2e


def test_attach_remote_checks_the_vm_and_show_gives_its_facts(cli_env, sshd):
    attached = cli(
        cli_env,
        "computetarget",
        "attach",
        "remote",
        "--name",
        "cli-vm",
        "--address",
        sshd.host,
        "--ssh-port",
        str(sshd.port),
        "--username",
        sshd.username,
        "--password",
        sshd.password,
    )
    assert attached.returncode == 0, attached.stderr
    assert sshd.password not in attached.stdout + attached.stderr
    shown = cli(cli_env, "computetarget", "show", "-n", "cli-vm")
    assert shown.returncode == 0
    assert "Succeeded" in shown.stdout
    assert sshd.host_key_fingerprint in shown.stdout
    assert "cpus:" in shown.stdout
    assert "cli-vm" in cli(cli_env, "computetarget", "list").stdout

    detached = cli(cli_env, "computetarget", "detach", "-n", "cli-vm")
    assert detached.stdout == "Detached cli-vm.\n"
    gone = cli(cli_env, "computetarget", "show", "-n", "cli-vm")
    assert gone.returncode != 0
    assert "No compute target called cli-vm in this workspace." in gone.stderr


def test_attach_remote_with_a_private_key_file_and_its_passphrase(cli_env, sshd, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", str(key)], check=True
    )
    sshd.authorize(key.with_suffix(".pub").read_text())
    login = ["--address", sshd.host, "--ssh-port", str(sshd.port), "--username", sshd.username]
    missing = cli(
        cli_env,
        "computetarget",
        "attach",
        "remote",
        "-n",
        "cli-keyed",
        *login,
        "--private-key-file",
        str(tmp_path / "nope"),
    )
    assert missing.returncode != 0
    assert f"Cannot read the private key {tmp_path / 'nope'}" in missing.stderr
    attached = cli(
        cli_env,
        "computetarget",
        "attach",
        "remote",
        "-n",
        "cli-keyed",
        *login,
        "--private-key-file",
        str(key),
        "--passphrase",
        "open sesame",
        "-o",
        "json",
    )
    assert attached.returncode == 0, attached.stderr
    target = json.loads(attached.stdout)
    assert (target["state"], target["auth_method"]) == ("Succeeded", "key")
    assert "open sesame" not in attached.stdout
    cli(cli_env, "computetarget", "detach", "-n", "cli-keyed")


def test_a_failed_hdinsight_check_exits_non_zero_naming_the_failed_step(cli_env, sshd):
    attached = cli(
        cli_env,
        "computetarget",
        "attach",
        "hdinsight",
        "--name",
        "cli-spark",
        "--address",
        sshd.host,
        "--ssh-port",
        str(sshd.port),
        "--username",
        sshd.username,
        "--password",
        sshd.password,
    )
    assert attached.returncode == 1
    assert "Failed" in attached.stdout
    assert "spark-submit is not on PATH" in attached.stdout
    assert "failed step" in attached.stdout
    cli(cli_env, "computetarget", "detach", "-n", "cli-spark")


def test_create_amlcompute_makes_a_cluster_that_detach_deletes(cli_env):
    size = ["--vm-size", "STANDARD_D2_V2", "--max-nodes", "1"]
    unknown = cli(
        cli_env, "computetarget", "create", "amlcompute", "--name", "cli-c", "-s", "NOPE", "-M", "1"
    )
    assert unknown.returncode != 0
    assert "NOPE is not a virtual machine size Trainyard knows." in unknown.stderr
    created = cli(cli_env, "computetarget", "create", "amlcompute", "--name", "cli-c", *size)
    assert created.returncode == 0, created.stderr
    assert "Succeeded" in created.stdout and "Standard_D2_v2" in created.stdout
    deleted = cli(cli_env, "computetarget", "detach", "-n", "cli-c")
    assert deleted.stdout == "Deleting the cluster cli-c: its nodes are being removed.\n"


def test_validation_errors_are_shown_field_by_field(cli_env):
    result = cli(
        cli_env,
        "computetarget",
        "attach",
        "remote",
        "--name",
        "bad name!",
        "--address",
        "10.0.0.4",
        "--username",
        "azureuser",
        "--password",
        "pw",
    )
    assert result.returncode != 0
    assert "name: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_wrong_token_says_where_to_create_one(cli_env):
    cli_env["TRAINYARD_TOKEN"] = "ty_not-a-real-token"
    result = cli(cli_env, "experiment", "list")
    assert result.returncode != 0
    assert "refused the access token: create one in Settings → Access tokens" in result.stderr
    assert "ty_not-a-real-token" not in result.stderr + result.stdout


def test_an_unreachable_server_is_named(cli_env):
    cli_env["TRAINYARD_URL"] = "http://127.0.0.1:9"
    result = cli(cli_env, "run", "list")
    assert result.returncode != 0
    assert "Cannot reach Trainyard at http://127.0.0.1:9: is it running" in result.stderr


def test_a_reader_gets_the_refusal_on_submit(cli_env, tokens, tmp_path):
    cli_env["TRAINYARD_TOKEN"] = tokens["bob"]
    folder = write_tree(tmp_path / "project", {"fail.py": FAIL})
    result = cli(
        cli_env, "run", "submit-script", "-e", "cli-bob", "-t", "local", "fail.py", cwd=folder
    )
    assert result.returncode != 0
    assert "Your role in Vision is Reader; this needs Contributor." in result.stderr


def test_login_saves_the_token_for_the_owner_only_and_never_prints_it(cli_env, live_stack, tokens):
    token = cli_env.pop("TRAINYARD_TOKEN")
    cli_env.pop("TRAINYARD_URL")
    logged_in = cli(cli_env, "login", "--url", live_stack.url, "--token", token)
    assert logged_in.returncode == 0, logged_in.stderr
    assert token not in logged_in.stdout + logged_in.stderr
    saved = Path(cli_env["XDG_CONFIG_HOME"]) / "trainyard" / "login.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    listed = cli(cli_env, "computetarget", "list", "-o", "json")
    assert "local" in [t["name"] for t in json.loads(listed.stdout)]


def user_token(live_stack, username: str, staff: bool = False) -> str:
    """A token of a new user of no workspace: the other tests' users keep theirs."""
    live_stack.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user({username!r}, '{username}@example.com', is_staff={staff})",
    )
    return live_stack.manage("create_token", username, "--name", "cli").stdout.strip()


def test_workspace_verbs_create_show_and_manage_members(cli_env, live_stack):
    cli_env["TRAINYARD_TOKEN"] = erin = user_token(live_stack, "erin", staff=True)
    created = cli(cli_env, "workspace", "create", "CLI team")
    assert created.returncode == 0, created.stderr
    assert created.stdout == "Created workspace CLI team (cli-team); you are its Owner.\n"
    listed = cli(cli_env, "workspace", "list")
    assert listed.stdout == "SLUG      NAME      ROLE\ncli-team  CLI team  owner\n"
    shown = cli(cli_env, "workspace", "show")
    assert "member_count  1" in shown.stdout, shown.stdout

    frank = user_token(live_stack, "frank")
    added = cli(cli_env, "workspace", "member", "add", "frank", "--role", "contributor")
    assert added.stdout == "frank is now Contributor.\n", added.stderr
    members = cli(cli_env, "workspace", "member", "list", "-o", "json")
    assert json.loads(members.stdout) == [
        {"user": "erin", "role": "owner"},
        {"user": "frank", "role": "contributor"},
    ]
    last_owner = cli(cli_env, "workspace", "member", "remove", "erin")
    assert last_owner.returncode != 0
    assert "A workspace needs at least one owner: make someone else owner first." in (
        last_owner.stderr
    )

    cli_env["TRAINYARD_TOKEN"] = frank
    refused = cli(cli_env, "workspace", "member", "remove", "erin")
    assert refused.returncode != 0
    assert "Your role in CLI team is Contributor; this needs Owner." in refused.stderr
    cli_env["TRAINYARD_TOKEN"] = erin
    removed = cli(cli_env, "workspace", "member", "remove", "frank")
    assert removed.stdout == "Removed frank from cli-team.\n", removed.stderr


def test_a_user_without_a_workspace_is_told_how_to_get_one(cli_env, live_stack):
    cli_env["TRAINYARD_TOKEN"] = user_token(live_stack, "dana")
    listed = cli(cli_env, "run", "list")
    assert listed.returncode != 0
    assert (
        "You belong to no workspace yet: create one with `trainyard workspace create NAME`, or "
        "ask an administrator to add you to one." in listed.stderr
    )
    created = cli(cli_env, "workspace", "create", "Dana's")
    assert created.returncode != 0
    assert "Only staff create workspaces on this server: ask an administrator" in created.stderr
