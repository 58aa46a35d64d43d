"""How uploads are held while a request is parsed.

Django's own handlers decide once per request: a request larger than
FILE_UPLOAD_MAX_MEMORY_SIZE puts every one of its files in a temporary file.
A source folder chosen in the browser is one request of thousands of small
files, and a temporary file each doubles the files the server creates to
snapshot it. This handler decides per file instead.
"""

from io import BytesIO
from typing import IO, Any

from django.conf import settings
from django.core.files.uploadedfile import (
    InMemoryUploadedFile,
    TemporaryUploadedFile,
    UploadedFile,
)
from django.core.files.uploadhandler import FileUploadHandler


class PerFileUploadHandler(FileUploadHandler):
    """Each file in memory up to FILE_UPLOAD_MAX_MEMORY_SIZE, a larger one in a temporary
    file, until the request holds UPLOAD_MEMORY_MAX_BYTES in memory: later files go to
    temporary files whatever their size."""

    def handle_raw_input(
        self,
        input_data: IO[bytes],
        META: dict[str, str],
        content_length: int,
        boundary: str,
        encoding: str | None = None,
    ) -> None:
        self.held = 0

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.memory: BytesIO | None = BytesIO()
        self.temporary: TemporaryUploadedFile | None = None
        if self.held >= settings.UPLOAD_MEMORY_MAX_BYTES:
            self._spill()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        if self.memory is not None and (
            self.memory.tell() + len(raw_data) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        ):
            self._spill()
        held = self.memory if self.memory is not None else self.temporary
        assert held is not None
        held.write(raw_data)

    def _spill(self) -> None:
        assert self.file_name is not None  # new_file has named the file
        self.temporary = TemporaryUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )
        if self.memory is not None:
            self.temporary.write(self.memory.getvalue())
        self.memory = None

    def file_complete(self, file_size: int) -> UploadedFile:
        if self.temporary is not None:
            self.temporary.seek(0)
            self.temporary.size = file_size
            return self.temporary
        assert self.memory is not None
        self.held += file_size
        self.memory.seek(0)
        return InMemoryUploadedFile(
            file=self.memory,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=file_size,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
