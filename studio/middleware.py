import json
from collections.abc import Callable
from typing import Any

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.core.exceptions import BadRequest
from django.http import HttpRequest
from django.http.response import HttpResponseBase

# These answer for themselves: the API checks bearer tokens, healthz is for probes.
OPEN_PREFIXES = ("/api/", "/healthz", "/static/")


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Every page needs a signed-in user, except the prefixes above."""

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[Any, ...],
        view_kwargs: dict[Any, Any],
    ) -> HttpResponseBase | None:
        if request.path.startswith(OPEN_PREFIXES):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class NulCharacterSent(BadRequest):
    """A request whose address, query or fields hold a NUL character."""


class RefuseNulCharactersMiddleware:
    """Refuse (400) a NUL character in the address, the query string, form fields or a JSON
    body: no name, filter or text the studio keeps may hold one (PostgreSQL cannot store it),
    and refusing it here keeps it from every lookup and form. Uploaded files are not looked at.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponseBase],
        view_args: tuple[Any, ...],
        view_kwargs: dict[Any, Any],
    ) -> HttpResponseBase | None:
        where = _nul_in(request)
        if where:
            raise NulCharacterSent(
                f"The {where} holds a NUL character (\\0), which no name or text in Trainyard "
                "may hold: remove it and send the request again."
            )
        return None


def _nul_in(request: HttpRequest) -> str:
    if "\x00" in request.path:
        return "address"
    if _holds_nul(list(request.GET.lists())):
        return "query string"
    if request.method == "POST" and request.content_type in (
        "multipart/form-data",
        "application/x-www-form-urlencoded",
    ):
        if _holds_nul(list(request.POST.lists())):
            return "form"
    elif request.content_type == "application/json" and request.body:
        try:
            if _holds_nul(json.loads(request.body)):
                return "JSON body"
        except ValueError:
            pass  # Not JSON: the view says what is wrong with it.
    return ""


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_holds_nul(item) for item in value)
    return False
