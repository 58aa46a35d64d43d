"""Where the studio is and who is calling: the login file, TRAINYARD_URL / TRAINYARD_TOKEN,
and the HTTP calls, whose failures become one-line CliErrors that say what to do next."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import requests

PROG = "trainyard"
TIMEOUT_SECONDS = 30
CREATE_TOKEN = "create one in Settings → Access tokens"  # noqa: S105 - where, not a token  # nosec B105


class CliError(Exception):
    """A failure the user can fix; the message says how. Never carries the token."""


def login_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "trainyard" / "login.json"


def login_save(*, url: str, token: str) -> Path:
    path = login_file()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created with 0600 from the start: the token is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    return path


def login_read() -> dict:
    path = login_file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        raise CliError(
            f"{path} is not a login file: run `{PROG} login --url URL --token TOKEN` again."
        ) from None
    return data if isinstance(data, dict) else {}


def error_detail(response: requests.Response) -> str:
    """The API's own words for a refusal, field by field for a validation error."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    errors = body.get("errors")
    if isinstance(errors, dict) and errors:
        return "; ".join(
            f"{field}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in errors.items()
        )
    detail = body.get("detail")
    if isinstance(detail, list):
        return "; ".join(
            f"{item.get('loc', ['?'])[-1]}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        )
    return str(detail or "")


class Api:
    """The studio's /api/v1/ as one user sees it with their personal access token."""

    def __init__(self, *, url: str | None, token: str | None):
        saved = login_read() if not (url and token) else {}
        self.url = (url or os.environ.get("TRAINYARD_URL") or saved.get("url") or "").rstrip("/")
        self.token = token or os.environ.get("TRAINYARD_TOKEN") or saved.get("token") or ""
        if not self.url:
            raise CliError(
                f"Where is Trainyard? Give --url (or set TRAINYARD_URL), or run "
                f"`{PROG} login --url URL --token TOKEN` once."
            )
        if not self.token:
            raise CliError(
                f"No access token: {CREATE_TOKEN}, then run `{PROG} login --url {self.url} "
                "--token TOKEN` (or set TRAINYARD_TOKEN)."
            )
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def request(
        self, method: str, path: str, *, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        url = f"{self.url}/api/v1{path}"
        try:
            response = self.session.request(
                method,
                url,
                stream=stream,
                timeout=(TIMEOUT_SECONDS, None if stream else TIMEOUT_SECONDS),
                **kwargs,
            )
        except requests.ConnectionError:
            raise CliError(
                f"Cannot reach Trainyard at {self.url}: is it running, and is the address right "
                "(--url, TRAINYARD_URL)?"
            ) from None
        except requests.Timeout:
            raise CliError(
                f"Trainyard at {self.url} did not answer within {TIMEOUT_SECONDS} s: try again."
            ) from None
        if response.ok:
            return response
        raise self.refusal(response)

    def refusal(self, response: requests.Response) -> CliError:
        detail = error_detail(response)
        if response.status_code == 401:
            return CliError(
                f"Trainyard at {self.url} refused the access token: {CREATE_TOKEN}, then run "
                f"`{PROG} login --url {self.url} --token TOKEN`."
            )
        if not detail:
            return CliError(
                f"{self.url} answered HTTP {response.status_code} to {response.request.method} "
                f"{response.request.path_url}: is it the address of a Trainyard studio?"
            )
        if response.status_code == 404:
            return CliError(
                f"{detail}{'' if detail.endswith('.') else '.'} Check the name or id (the list "
                "verbs show them) and the workspace (-w)."
            )
        return CliError(detail)

    def get(self, path: str, **params: Any) -> Any:
        return self.answer(self.request("GET", path, params=params))

    def post(self, path: str, *, params: dict | None = None, **kwargs: Any) -> Any:
        return self.answer(self.request("POST", path, params=params, **kwargs))

    def put(self, path: str, *, params: dict | None = None, **kwargs: Any) -> Any:
        return self.answer(self.request("PUT", path, params=params, **kwargs))

    def answer(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"{self.url} answered {response.request.path_url} with something other than "
                "JSON: is it the address of a Trainyard studio?"
            ) from None

    def delete(self, path: str, **params: Any) -> requests.Response:
        return self.request("DELETE", path, params=params)
