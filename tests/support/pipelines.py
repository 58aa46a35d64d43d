"""Shared pieces of the pipeline tests: a three-step word count across the local target,
Databricks and Batch, its source archive, the targets it runs on, and a stand-in for the
Celery beat that advances pipelines."""

from __future__ import annotations

import io
import tarfile
import textwrap
import threading
from collections.abc import Mapping
from contextlib import contextmanager

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from compute.cloud import services as cloud_services
from compute.models import ComputeTarget
from pipelines import services
from pipelines.models import Pipeline
from runs.models import Run, RunFile
from studio.blobs import blob_path
from tests.support.runs import minimal_environment

PREPARE = textwrap.dedent(
    """
    import os, sys
    os.makedirs("outputs/words", exist_ok=True)
    text = " ".join(sys.argv[1:]) or "the cat saw the dog and the bird"
    with open("outputs/words/words.txt", "w") as out:
        out.write("\\n".join(text.split()))
    print("prepared", len(text.split()), "words", flush=True)
    """
)
COUNT = textwrap.dedent(
    """
    import collections, json, os
    words = open("inputs/words/words.txt").read().split()
    counts = collections.Counter(words)
    os.makedirs("outputs/counts", exist_ok=True)
    json.dump(counts, open("outputs/counts/counts.json", "w"))
    print("counted", len(counts), "distinct words on Databricks", flush=True)
    """
)
REPORT = textwrap.dedent(
    """
    import json, os
    counts = json.load(open("inputs/counts/counts.json"))
    word, n = max(counts.items(), key=lambda item: item[1])
    os.makedirs("outputs", exist_ok=True)
    open("outputs/report.txt", "w").write(f"top word: {word} ({n})\\n")
    print(f"top word: {word} ({n})", flush=True)
    """
)
FAIL = "import sys\nprint('cannot count today', file=sys.stderr)\nsys.exit(3)\n"

PIPELINE = textwrap.dedent(
    """
    name: word-count
    experiment: text-jobs
    steps:
      - name: prepare
        compute: local
        script: prepare.py
        arguments: [the, cat, saw, the, dog, and, the, bird]
        outputs: [words]
      - name: count
        type: databricks
        compute: dbx
        python_script: count.py
        cluster_id: 0923-164208-meows279
        inputs: [words]
        outputs: [counts]
      - name: report
        type: batch
        compute: cpubatch
        command: python3 report.py
        inputs: [counts]
    """
)


def archive(files: Mapping[str, str | bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else content.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return SimpleUploadedFile("source.tar.gz", buffer.getvalue())


SOURCE = {"prepare.py": PREPARE, "count.py": COUNT, "report.py": REPORT, "fail.py": FAIL}


@contextmanager
def advancing_pipelines(interval: float = 0.2):
    """What the Celery beat does in `manage.py up`: advance open pipelines now and then."""
    stop = threading.Event()

    def loop():
        from django.db import connection

        try:
            while not stop.is_set():
                services.pipelines_advance()
                stop.wait(interval)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@pytest.fixture
def cloud_targets(workspace, alice, databricks_emulator, batch_emulator):
    minimal_environment()
    cloud_services.databricks_attach(
        workspace=workspace,
        user=alice,
        name="dbx",
        workspace_url=databricks_emulator.url,
        resource_group="ml-rg",
        access_token=databricks_emulator.token,
        cluster_id="0923-164208-meows279",
    )
    cloud_services.batch_attach(
        workspace=workspace,
        user=alice,
        name="cpubatch",
        account_name=batch_emulator.account_name,
        account_url=batch_emulator.url,
        resource_group="ml-rg",
        account_key=batch_emulator.account_key,
        pool_id="cpu-pool",
    )
    assert set(ComputeTarget.objects.filter(state="Succeeded").values_list("name", flat=True)) >= {
        "dbx",
        "cpubatch",
    }


def steps_of(parent: Run) -> dict[str, Run]:
    return {step.name: step.run for step in Pipeline.objects.get(run=parent).steps.all()}


def file_text(run: Run, path: str) -> str:
    sha = RunFile.objects.get(run=run, path=path).sha256
    return blob_path(sha).read_text()


def stored_log(run: Run, stream: str = "stdout") -> str:
    from runs.logs import store as logstore

    return logstore.read(run.pk, stream, 0, 1 << 20)[0].decode()
