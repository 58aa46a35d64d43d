"""A source folder's many small files are held in memory, large ones and the overflow on disk."""

from django.core.files.uploadedfile import (
    InMemoryUploadedFile,
    SimpleUploadedFile,
    TemporaryUploadedFile,
)
from django.test import RequestFactory, override_settings
from django.test.client import MULTIPART_CONTENT


def parsed_files(files: dict[str, bytes]):
    request = RequestFactory().post(
        "/",
        {"source_folder": [SimpleUploadedFile(name, data) for name, data in files.items()]},
        content_type=MULTIPART_CONTENT,
    )
    return {upload.name: upload for upload in request.FILES.getlist("source_folder")}


def test_small_files_of_a_large_request_stay_in_memory_a_large_file_goes_to_disk():
    small = {f"f{i}.bin": bytes([i]) * 20_000 for i in range(150)}  # 3 MB in all
    big = b"x" * (3 * 1024 * 1024)

    uploads = parsed_files({**small, "big.bin": big})

    assert all(isinstance(uploads[name], InMemoryUploadedFile) for name in small)
    assert isinstance(uploads["big.bin"], TemporaryUploadedFile)
    assert {name: uploads[name].read() for name in small} == small
    assert uploads["big.bin"].read() == big
    assert uploads["big.bin"].size == len(big)


@override_settings(UPLOAD_MEMORY_MAX_BYTES=100_000)
def test_once_the_request_holds_its_share_of_memory_later_files_go_to_disk():
    files = {f"f{i}.bin": bytes([i]) * 40_000 for i in range(5)}

    uploads = parsed_files(files)

    kinds = [type(uploads[name]) for name in files]
    assert kinds == [InMemoryUploadedFile] * 3 + [TemporaryUploadedFile] * 2
    assert {name: uploads[name].read() for name in files} == files
