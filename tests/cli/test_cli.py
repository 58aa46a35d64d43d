"""The command line (`python -m cli`) as a script runs it: a subprocess against `manage.py up`.

Tokens come from `manage.py create_token`; runs go to the workspace's built-in
`local` target, and a VM is attached from the test sshd.
"""

import json
import re
import subprocess
import threading
import time
import uuid

import pytest

from tests.support.cli import FAIL, RUNCONFIG, TRAIN, cli, cli_command, project
from tests.support.runs import write_tree

pytestmark = pytest.mark.e2e

PIPELINE = """\
name: cli-pipeline
experiment: cli-pipes
steps:
  - name: prepare
    type: script
    compute: local
    script: prepare.py
"""

# The lower --lr, the better the child: which one is best only the metrics tell.
TUNE = """\
import sys
from trainyard import run
lr = float(sys.argv[sys.argv.index("--lr") + 1])
print("epochs", sys.argv[2], "lr", lr, flush=True)
run.log("accuracy", round(1 - lr, 4))
"""

HDCONFIG = """\
sampling:
  type: random
  parameter_space:
  - name: --lr
    expression: uniform
    values: [0.01, 0.5]
policy:
  type: NoTerminationPolicy
primary_metric_name: accuracy
primary_metric_goal: maximize
max_total_runs: 2
max_concurrent_runs: 2
max_duration_minutes: 10
"""

# Prints a file the second submit changes, beside ones it does not send again.
SHOW_CONFIG = """\
from pathlib import Path
print(Path("lib/config.txt").read_text().strip(), flush=True)
"""

SLEEP = """\
import time
print("started", flush=True)
time.sleep(300)
"""


def test_a_script_submitted_from_an_attached_folder_streams_its_output_and_exits_0(
    cli_env, tmp_path, shared_dir
):
    folder = project(tmp_path, TRAIN)
    attached = cli(cli_env, "folder", "attach", "-e", "cli-train", cwd=folder)
    assert attached.returncode == 0, attached.stderr
    assert json.loads((folder / ".azureml/config.json").read_text())["experiment_name"] == (
        "cli-train"
    )
    go = shared_dir / "go"
    submit = subprocess.Popen(
        cli_command("run", "submit-script", "-c", "train", "train.py", "--epochs", "2", str(go)),
        cwd=folder,
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # A run that never starts must not hang the suite on the first line.
    guard = threading.Timer(240, submit.kill)
    guard.start()
    try:
        assert submit.stdout is not None
        assert submit.stdout.readline() == "epoch 0 of 2 data left out: True\n"
        go.touch()
        stdout, stderr = submit.communicate(timeout=180)
    finally:
        guard.cancel()
        submit.kill()
    assert stdout == "epoch 1 loss=0.5\n"
    assert "warming up\n" in stderr
    assert "Completed." in stderr
    assert submit.returncode == 0

    listed = cli(cli_env, "run", "list", cwd=folder)
    assert "cli-train" in listed.stdout and "Completed" in listed.stdout
    experiments = json.loads(cli(cli_env, "experiment", "list", "-o", "json").stdout)
    assert {"name": "cli-train", "run_count": 1} in [
        {k: e[k] for k in ("name", "run_count")} for e in experiments
    ]


def test_a_failing_script_exits_non_zero_with_its_stderr(cli_env, tmp_path):
    folder = write_tree(tmp_path / "project", {"fail.py": FAIL})
    result = cli(
        cli_env,
        "run",
        "submit-script",
        "-e",
        "cli-fail",
        "--target",
        "local",
        "fail.py",
        cwd=folder,
    )
    assert result.returncode == 1
    assert result.stdout == "loading\n"
    assert "CUDA out of memory\n" in result.stderr
    assert "Failed" in result.stderr


def test_a_second_submit_uploads_only_the_changed_file_and_the_run_sees_it(cli_env, tmp_path):
    # Content of its own, so no earlier test's files are stored already.
    mark = uuid.uuid4().hex
    folder = write_tree(
        tmp_path / "project",
        {
            "show.py": f"{SHOW_CONFIG}# {mark}\n",
            "lib/config.txt": f"first {mark}\n",
            "lib/helpers.py": f"# {mark}\n",
            ".amlignore": f"# {mark}\ndata/\n",
            "data/big.bin": "x" * 1000,
        },
    )
    submit = ("run", "submit-script", "-e", "cli-upload", "-t", "local", "show.py")
    first = cli(cli_env, *submit, cwd=folder)
    assert first.returncode == 0, first.stderr
    assert re.search(r"Uploaded 4 of 4 files \(\d+ B\)\.\n", first.stderr), first.stderr
    assert first.stdout == f"first {mark}\n"

    (folder / "lib/config.txt").write_text(f"second {mark}\n")
    second = cli(cli_env, *submit, cwd=folder)
    assert second.returncode == 0, second.stderr
    assert "Uploaded 1 of 4 files (40 B); the server had the rest.\n" in second.stderr
    assert "Completed." in second.stderr
    assert second.stdout == f"second {mark}\n"


def test_no_wait_prints_the_run_id_then_show_and_cancel_it(cli_env, tmp_path):
    folder = write_tree(tmp_path / "project", {"sleep.py": SLEEP})
    submitted = cli(
        cli_env,
        "run",
        "submit-script",
        "-e",
        "cli-sleep",
        "-t",
        "local",
        "--no-wait",
        "sleep.py",
        cwd=folder,
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    assert run_id.isdigit()

    shown = cli(cli_env, "run", "show", "--run", run_id)
    assert shown.returncode == 0
    assert "cli-sleep" in shown.stdout and "sleep.py" in shown.stdout

    canceled = cli(cli_env, "run", "cancel", "--run", run_id)
    assert canceled.returncode == 0, canceled.stderr
    assert f"Run {run_id} is" in canceled.stdout
    deadline = time.monotonic() + 120
    while (
        json.loads(cli(cli_env, "run", "show", "-r", run_id, "-o", "json").stdout)["status"]
        != "Canceled"
    ):
        assert time.monotonic() < deadline, "the run was not canceled"
        time.sleep(1)
    again = cli(cli_env, "run", "cancel", "--run", run_id)
    assert again.returncode != 0
    assert "The run is Canceled: there is nothing to cancel." in again.stderr


def test_a_pipeline_is_submitted_with_its_steps(cli_env, tmp_path):
    folder = write_tree(
        tmp_path / "project",
        {"pipeline.yml": PIPELINE, "steps/prepare.py": "print('prepared')\n"},
    )
    submitted = cli(
        cli_env,
        "pipeline",
        "submit",
        "--definition",
        "pipeline.yml",
        "--source-directory",
        "steps",
        "-o",
        "json",
        cwd=folder,
    )
    assert submitted.returncode == 0, submitted.stderr
    pipeline = json.loads(submitted.stdout)
    assert pipeline["experiment"] == "cli-pipes"
    assert [(s["name"], s["compute"]) for s in pipeline["steps"]] == [("prepare", "local")]
    logs = cli(cli_env, "run", "logs", "--run", str(pipeline["steps"][0]["run_id"]), "--follow")
    assert logs.stdout == "prepared\n"


def test_a_sweep_shows_its_children_as_they_change_and_names_the_best(cli_env, tmp_path):
    folder = write_tree(
        tmp_path / "project",
        {
            "train.py": TUNE,
            "hdconfig.yml": HDCONFIG,
            ".azureml/tune.runconfig": RUNCONFIG + "arguments: [--epochs, 3]\n",
        },
    )
    submitted = cli(
        cli_env,
        "run",
        "submit-hyperdrive",
        "-e",
        "cli-sweep",
        "-c",
        "tune",
        "--hyperdrive-configuration-name",
        "hdconfig.yml",
        cwd=folder,
    )
    assert submitted.returncode == 0, submitted.stderr
    header = re.search(r"Sweep (\d+) \(cli-sweep #\d+\) of 2 run\(s\) on local", submitted.stderr)
    assert header, submitted.stderr
    shown = cli(cli_env, "run", "show", "--run", header[1], "-o", "json")
    sweep = json.loads(shown.stdout)
    children = sweep["children"]
    assert [c["status"] for c in children] == ["Completed", "Completed"]
    best = max(children, key=lambda c: c["primary_metric"])
    for child in children:
        lr = f"--lr {child['hyperparameters']['--lr']}"
        assert f"Run {child['run_id']} ({lr}): Completed, accuracy {child['primary_metric']}\n" in (
            submitted.stdout
        )
        assert child["primary_metric"] == round(1 - child["hyperparameters"]["--lr"], 4)
        assert child["arguments"][:2] == ["--epochs", "3"]
    assert submitted.stdout.endswith(
        f"Sweep {header[1]} Completed. Best: run {best['run_id']} "
        f"(--lr {best['hyperparameters']['--lr']}), accuracy {best['primary_metric']} "
        "(maximize).\n"
    )

    table = cli(cli_env, "run", "show", "--run", header[1]).stdout
    assert re.search(r"^sampling +random$", table, re.MULTILINE), table
    rows = [line.split() for line in table.splitlines() if line.startswith(str(best["run_id"]))]
    assert rows and rows[0][-1] == "*", table


def test_an_hdconfig_in_azureml_is_found_and_no_wait_prints_the_sweeps_run_id(cli_env, tmp_path):
    folder = write_tree(tmp_path / "project", {"train.py": TUNE, ".azureml/hdconfig.yml": HDCONFIG})
    submitted = cli(
        cli_env,
        "run",
        "submit-hyperdrive",
        "-e",
        "cli-sweep",
        "-t",
        "local",
        "--hyperdrive-configuration-name",
        "hdconfig.yml",
        "--no-wait",
        "train.py",
        "--epochs",
        "1",
        cwd=folder,
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    shown = json.loads(cli(cli_env, "run", "show", "--run", run_id, "-o", "json").stdout)
    assert (shown["id"], shown["max_total_runs"], shown["entry_script"]) == (
        int(run_id),
        2,
        "train.py",
    )


def test_a_malformed_hdconfig_names_the_key_and_exits_non_zero(cli_env, tmp_path):
    bad = HDCONFIG.replace("max_concurrent_runs: 2", "max_concurrent_runs: two")
    folder = write_tree(tmp_path / "project", {"train.py": TUNE, "hdconfig.yml": bad})
    result = cli(
        cli_env,
        "run",
        "submit-hyperdrive",
        "-e",
        "cli-sweep",
        "--target",
        "local",
        "--hyperdrive-configuration-name",
        "hdconfig.yml",
        "train.py",
        cwd=folder,
    )
    assert result.returncode != 0
    assert result.stderr == (
        "trainyard: hyperdrive_config: max_concurrent_runs is 'two': give a whole number from 1 "
        "to 1000.\n"
    )
    missing = cli(
        cli_env,
        "run",
        "submit-hyperdrive",
        "--hyperdrive-configuration-name",
        "nope.yml",
        "-e",
        "cli-sweep",
        "train.py",
        cwd=folder,
    )
    assert missing.returncode != 0
    assert "No hdconfig file nope.yml: looked for nope.yml, " in missing.stderr
    assert "Give the sweep's hdconfig.yml with --hyperdrive-configuration-name." in missing.stderr


# Leaves an output, a log and, beside it, an executable helper in its snapshot.
WRITE_FILES = """\
from pathlib import Path
Path("outputs/model").mkdir(parents=True, exist_ok=True)
Path("outputs/model/weights.txt").write_text("w=1\\n")
Path("logs").mkdir(exist_ok=True)
Path("logs/train.log").write_text("epoch 1\\n")
"""


def test_run_download_writes_outputs_logs_and_snapshot_under_the_folder_only(cli_env, tmp_path):
    folder = write_tree(
        tmp_path / "project", {"write.py": WRITE_FILES, "tools/go.sh": "#!/bin/sh\n"}
    )
    (folder / "tools/go.sh").chmod(0o755)
    submitted = cli(
        cli_env, "run", "submit-script", "-e", "cli-dl", "-t", "local", "write.py", cwd=folder
    )
    assert submitted.returncode == 0, submitted.stderr
    run_id = re.findall(r"^Run (\d+) ", submitted.stderr, re.M)[0]

    out = tmp_path / "out"
    files = cli(cli_env, "run", "download", "--run", run_id, "-o", str(out))
    assert files.returncode == 0, files.stderr
    assert files.stdout == f"Downloaded 2 files (12 B) to {out}\n"
    assert (out / "outputs/model/weights.txt").read_text() == "w=1\n"
    assert (out / "logs/train.log").read_text() == "epoch 1\n"

    logs = cli(cli_env, "run", "download", "--run", run_id, "--logs", "-o", str(tmp_path / "logs"))
    assert logs.stdout == f"Downloaded 1 file (8 B) to {tmp_path / 'logs'}\n"
    assert not (tmp_path / "logs/outputs").exists()

    source = tmp_path / "source"
    snapshot = cli(cli_env, "run", "download", "-r", run_id, "--snapshot", "-o", str(source))
    assert snapshot.returncode == 0, snapshot.stderr
    assert (source / "write.py").read_text() == WRITE_FILES
    assert (source / "tools/go.sh").stat().st_mode & 0o111
    assert not (source / "tools/go.sh").is_symlink()

    (out / "logs/train.log").write_text("mine\n")
    again = cli(cli_env, "run", "download", "--run", run_id, "-o", str(out))
    assert again.returncode != 0
    assert f"{out / 'logs/train.log'} exists (and 1 more): give --overwrite" in (again.stderr)
    assert (out / "logs/train.log").read_text() == "mine\n"
    replaced = cli(cli_env, "run", "download", "--run", run_id, "-o", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "logs/train.log").read_text() == "epoch 1\n"
