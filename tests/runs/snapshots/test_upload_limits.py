"""A source folder too big for one request gets a page that says which limit it hit."""

import hashlib
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.urls import reverse

from runs.models import Run
from tests.runs.test_run_pages import folder, submit_data

pytestmark = pytest.mark.django_db


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_a_folder_with_more_files_than_a_request_may_carry_says_what_to_do(workspace, as_carol):
    data = submit_data(source_paths="p/a.py\np/b.py\np/c.py")
    data["source_folder"] = folder(("0", b"1"), ("1", b"2"), ("2", b"3"))
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 400
    page = response.content.decode()
    assert "The form sent more files than one request may carry (2)." in page
    assert "with .amlignore (or .gitignore), or upload the folder as a .zip" in page
    assert "DATA_UPLOAD_MAX_NUMBER_FILES" in page
    assert not Run.objects.exists()


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=2)
def test_the_api_says_it_in_json(workspace, api_carol):
    uploads = [SimpleUploadedFile(name, b"x") for name in ("a.py", "b.py", "c.py")]
    response = api_carol.post(
        f"/api/v1/runs?workspace={workspace.slug}",
        {"experiment": "e", "manifest": "[]", "files": uploads},
    )
    assert response.status_code == 400
    assert "more files than one request may carry (2)" in response.json()["detail"]


def test_the_fields_of_a_folder_of_20000_files_with_long_paths_are_read(workspace, as_carol):
    # 20,000 paths of 150 characters and their hashes: over 4 MB of form fields.
    paths = [f"p/{'deep/' * 28}{i:06d}.py" for i in range(20000)]
    hashes = [hashlib.sha256(f"{uuid.uuid4()}".encode()).hexdigest() for _ in paths]
    data = submit_data(source_paths="\n".join(paths), source_hashes="\n".join(hashes))
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    # Read and checked: none of these files is stored, and the page says so.
    assert response.status_code == 200
    assert "was not uploaded and is not stored" in response.content.decode()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_form_fields_over_the_limit_say_which_setting(workspace, as_carol):
    data = submit_data(source_paths="p/" + "a" * 2000 + ".py")
    response = as_carol.post(reverse("run_submit", args=[workspace.slug]), data)
    assert response.status_code == 400
    page = response.content.decode()
    assert "The form sent more than 1000 B besides its files" in page
    assert "DATA_UPLOAD_MAX_MEMORY_SIZE" in page
