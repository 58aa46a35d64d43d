"""Error pages for requests Django refuses while reading them: what was too big, and what to do."""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import JsonResponse
from django.shortcuts import render

from runs.snapshots import human_bytes
from studio.middleware import NulCharacterSent


def bad_request(request, exception):
    """400, with the limit a large source folder hit spelled out; JSON under /api/."""
    message = _message(exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    return render(request, "400.html", {"message": message}, status=400)


def _message(exception) -> str:
    instead = (
        "Leave data and generated files out with .amlignore (or .gitignore), or upload the "
        "folder as a .zip / .tar.gz"
    )
    if isinstance(exception, NulCharacterSent):
        return str(exception)
    if isinstance(exception, TooManyFilesSent):
        return (
            f"The form sent more files than one request may carry "
            f"({settings.DATA_UPLOAD_MAX_NUMBER_FILES:,}). {instead}, or ask an operator to "
            "raise DATA_UPLOAD_MAX_NUMBER_FILES."
        )
    if isinstance(exception, RequestDataTooBig):
        return (
            "The form sent more than "
            f"{human_bytes(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)} besides its files (the paths "
            f"and hashes of a very large folder). {instead}, or ask an operator to raise "
            "DATA_UPLOAD_MAX_MEMORY_SIZE."
        )
    if isinstance(exception, TooManyFieldsSent):
        return (
            f"The form sent more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:,} fields. Go back "
            "and submit it again with fewer."
        )
    return "The request could not be read. Go back, reload the page and try again."
