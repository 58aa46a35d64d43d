"""YAML a user uploads (runconfig, hdconfig, pipeline definition) cannot exhaust the studio.

A kilobyte "billion laughs" of nested aliases, a deeply nested document and an
oversize file are each refused within a second, with a message naming the file
and what to change, on the run submit page and on the runs, sweeps and
pipelines APIs; nothing is submitted.
"""

import html

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from pipelines.models import Pipeline
from runs.models import Run
from studio import safeyaml
from sweeps.models import Sweep
from tests.runs.test_run_pages import folder, submit_data
from tests.runs.test_runs_api import archive


def alias_bomb() -> str:
    """Nine levels of nine aliases each: 9**9 (387 million) strings once expanded."""
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "\n".join(lines) + "\n"


BOMB = alias_bomb()
DEEP = "a: " + "[" * 5000 + "]" * 5000 + "\n"
BIG = "# padding\n" * (safeyaml.MAX_BYTES // 10 + 1)
ALIAS_REFUSED = "uses a YAML anchor or alias (&amp; or *) at line 1"


def refused(post) -> str:
    """The answer to a hostile document: were it parsed whole, the bomb would expand to
    hundreds of millions of strings and the deep one would overflow the stack, so an
    answer at all means it was refused before that."""
    response = post()
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 400:
        return html.escape(response.json()["detail"], quote=False)
    return response.content.decode()


def test_the_alias_bomb_is_about_a_kilobyte():
    assert len(BOMB) < 1024


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BOMB, ALIAS_REFUSED),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "uses a YAML anchor or alias"),
        (DEEP, "nests more than 50 levels deep at line 1: flatten it."),
    ],
)
def test_the_submit_page_refuses_a_hostile_runconfig(workspace, as_carol, document, message):
    data = submit_data(source_paths="p/train.py")
    data["source_folder"] = folder(("p/train.py", b"print(1)"))
    data["runconfig"] = SimpleUploadedFile("local.runconfig", document.encode())
    url = reverse("run_submit", args=[workspace.slug])
    page = refused(lambda: as_carol.post(url, data))
    assert f"The runconfig {message}" in page
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BOMB, ALIAS_REFUSED),
        (DEEP, "nests more than 50 levels deep"),
        (BIG, "is larger than 1 MB: it is a small YAML file"),
    ],
)
def test_the_runs_api_refuses_a_hostile_runconfig(api_carol, document, message):
    data = {
        "experiment": "api-exp",
        "snapshot": archive({"train.py": b"print(1)\n"}),
        "runconfig": SimpleUploadedFile("local.runconfig", document.encode()),
    }
    detail = refused(lambda: api_carol.post("/api/v1/runs?workspace=vision", data))
    assert f"The runconfig {message}" in detail
    assert not Run.objects.exists()


@pytest.mark.parametrize(("document", "message"), [(BOMB, ALIAS_REFUSED), (DEEP, "nests more")])
def test_the_sweeps_api_refuses_a_hostile_hdconfig(api_carol, document, message):
    data = {
        "hyperdrive_config": SimpleUploadedFile("hdconfig.yml", document.encode()),
        "snapshot": archive({"train.py": b"print(1)\n"}),
        "experiment": "tuning",
        "target": "local",
        "entry_script": "train.py",
    }
    detail = refused(lambda: api_carol.post("/api/v1/sweeps?workspace=vision", data))
    assert f"hyperdrive_config: The hdconfig file {message}" in detail
    assert not Sweep.objects.exists()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (BOMB, ALIAS_REFUSED),
        (DEEP, "nests more"),
        ("\x00steps: []\n", "holds a character YAML does not allow (code 0x0 at position 0)"),
    ],
)
def test_the_pipelines_api_refuses_a_hostile_definition(api_carol, document, message):
    data = {
        "definition": SimpleUploadedFile("pipeline.yml", document.encode()),
        "snapshot": archive({"train.py": b"print(1)\n"}),
    }
    detail = refused(lambda: api_carol.post("/api/v1/pipelines?workspace=vision", data))
    assert f"The pipeline file {message}" in detail
    assert not Pipeline.objects.exists()
