"""Errors a user can cause, one type for every service, and how pages and the API show them.

A service raises `ServiceError` with a message that says what to do instead, the form or
API field it concerns (if any) and, where callers must tell cases apart, a `code`. Pages
put it on their form with `form_add_service_error`; the API answers it with one handler
(`api_service_error`), so no view or endpoint maps errors of its own.
"""

import sys
from html import escape

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.defaults import server_error as django_server_error

from studio.middleware import NulCharacterSent
from studio.units import human_bytes


class ServiceError(Exception):
    """A request that cannot be done as asked; the message says what to do instead.

    `field` names the form/API field the message belongs to, `code` a case callers tell
    apart (e.g. NAME_TAKEN), `status` the HTTP status the API answers with.
    """

    def __init__(
        self, message: str, *, field: str | None = None, code: str = "", status: int = 400
    ):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.status = status


def form_add_service_error(form: BaseForm, exc: ServiceError) -> None:
    """Show `exc` on `form`: on its field when the form has that field, else above the form."""
    field = exc.field if exc.field in form.fields else None
    form.add_error(field, exc.message)


def api_service_error(request: HttpRequest, exc: ServiceError) -> JsonResponse:
    """The API's answer to a ServiceError: `detail` to read, `errors` by field, `code`."""
    detail = f"{exc.field}: {exc.message}" if exc.field else exc.message
    body: dict = {"detail": detail, "errors": {exc.field or "__all__": [exc.message]}}
    if exc.code:
        body["code"] = exc.code
    return JsonResponse(body, status=exc.status)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400, with the limit a large source folder hit spelled out; JSON under /api/."""
    message = _message(exception)
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=400)
    return render(request, "400.html", {"message": message}, status=400)


def _message(exception: Exception) -> str:
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


DATABASE_AWAY = (
    "The database is not answering (it may be restarting): send the request again in a moment."
)


def server_error(request: HttpRequest) -> HttpResponse:
    """500; or 503, saying to try again, when the database did not answer.

    Rendered without templates: their context needs the database that is away.
    """
    if not isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        return django_server_error(request)
    headers = {"Retry-After": "5"}
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": DATABASE_AWAY}, status=503, headers=headers)
    page = (
        "<!doctype html><html lang=en><title>Try again in a moment</title>"
        f"<h1>Try again in a moment</h1><p>{escape(DATABASE_AWAY)}</p></html>"
    )
    return HttpResponse(page, status=503, headers=headers)
