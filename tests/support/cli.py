"""Shared pieces of the command line tests: tokens for the live stack, the environment the
CLI runs in, running it as a subprocess, and a project folder with a training script."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.live_stack import ROOT
from tests.support.runs import write_tree

RUNCONFIG = """\
script: train.py
target: local
"""

# Waits for the test's go-ahead, so the first line can only be seen while the run is going on.
TRAIN = """\
import sys, time
from pathlib import Path
print("epoch 0 of", sys.argv[2], "data left out:", not Path("data").exists(), flush=True)
while not Path(sys.argv[3]).exists():
    time.sleep(0.1)
print("epoch 1 loss=0.5", flush=True)
print("warming up", file=sys.stderr, flush=True)
"""

FAIL = """\
import sys
print("loading", flush=True)
print("CUDA out of memory", file=sys.stderr)
sys.exit(3)
"""


@pytest.fixture(scope="module")
def tokens(live_stack) -> dict[str, str]:
    return {
        name: live_stack.manage("create_token", name, "--name", "cli").stdout.strip()
        for name in ("alice", "bob")
    }


@pytest.fixture
def cli_env(live_stack, tokens, tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "TRAINYARD"))}
    env.update(
        PYTHONPATH=str(ROOT),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        TRAINYARD_URL=live_stack.url,
        TRAINYARD_TOKEN=tokens["alice"],
    )
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def cli(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def project(tmp_path: Path, script: str) -> Path:
    return write_tree(
        tmp_path / "project",
        {
            "train.py": script,
            ".azureml/train.runconfig": RUNCONFIG,
            ".amlignore": "data/\n",
            "data/big.bin": "x" * 1000,
        },
    )
