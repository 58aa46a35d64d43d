"""An Azure Data Lake Analytics emulator: the U-SQL job REST API and an Azure AD token endpoint.

Endpoints:
- POST /{tenant}/oauth2/v2.0/token              Azure AD client-credentials grant
  (form: grant_type, client_id, client_secret, scope); AADSTS errors as Azure AD
  sends them for an unknown tenant, application or a wrong secret.
- PUT  /jobs/{jobIdentity}?api-version=2016-11-01  submit a U-SQL job (JobInformation body)
- GET  /jobs/{jobIdentity}?api-version=...         JobInformation: state, result, errorMessage
- POST /jobs/{jobIdentity}/CancelJob?api-version=...
- GET  /jobs?api-version=...&$top=N                the account's jobs, newest first

The job API needs `Authorization: Bearer <token from the endpoint above>`.

What the emulator does with U-SQL, honestly: it records the script
(`<root>/jobs/<id>/script.usql`) and compiles it only superficially; nothing
reads or writes data. The checks, each failing the job with errorId
E_CSC_USER_SYNTAXERROR and the line of the fault:
- comments (`//`, `/* */`) are ignored; string literals ("...", @"...") must close;
- parentheses must balance;
- every statement ends with `;`;
- a statement starts with an upper-case U-SQL keyword (DECLARE, SET, USE,
  OUTPUT, INSERT, CREATE, DROP, ALTER, REFERENCE, DEPLOY, TRUNCATE, IF, ...)
  or is a rowset assignment `@name = EXTRACT|SELECT|PROCESS|REDUCE|COMBINE|...`
  (U-SQL keywords are case-sensitive);
- EXTRACT needs FROM and USING, OUTPUT needs TO and USING.
A script that passes moves Compiling → Queued → Running → Ended with result
Succeeded; cancel ends it with result Cancelled.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from tests.emulators.base import EmulatorServer, HttpError, Request, Response, Ticker

API_VERSION = "2016-11-01"
STATEMENT_KEYWORDS = {
    "DECLARE",
    "SET",
    "USE",
    "OUTPUT",
    "INSERT",
    "CREATE",
    "DROP",
    "ALTER",
    "REFERENCE",
    "DEPLOY",
    "TRUNCATE",
    "IF",
    "ELSE",
    "END",
    "IMPORT",
    "PARAMETERS",
}
ROWSET_KEYWORDS = {"EXTRACT", "SELECT", "PROCESS", "REDUCE", "COMBINE", "VALUES"}


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


class AdlaError(HttpError):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(status, {"error": {"code": code, "message": message}})


@dataclass
class Diagnostic:
    line: int
    start: int
    end: int
    message: str

    def error_json(self, script: str) -> dict:
        return {
            "errorId": "E_CSC_USER_SYNTAXERROR",
            "severity": "Error",
            "source": "USER",
            "message": f"syntax error. {self.message}",
            "description": f"Invalid syntax found in the script. {self.message}",
            "details": f"at token '{script[self.start : self.end]}', line {self.line}",
            "resolution": "Correct the script syntax, using expected token(s) as a guide.",
            "lineNumber": self.line,
            "startOffset": self.start,
            "endOffset": self.end,
        }


def compile_usql(script: str) -> Diagnostic | None:
    """The first syntax fault of a U-SQL script, or None (see the module docstring)."""

    def at(offset: int, message: str, end: int | None = None) -> Diagnostic:
        return Diagnostic(script.count("\n", 0, offset) + 1, offset, end or offset + 1, message)

    # Blank out comments and string contents so the structure can be read.
    text = list(script)
    i, depth, opened = 0, 0, []
    while i < len(script):
        two = script[i : i + 2]
        if two == "//":
            end = script.find("\n", i)
            end = len(script) if end < 0 else end
            text[i:end] = " " * (end - i)
            i = end
        elif two == "/*":
            end = script.find("*/", i + 2)
            if end < 0:
                return at(i, "Expected '*/' to close the comment.")
            text[i : end + 2] = re.sub(r"[^\n]", " ", script[i : end + 2])
            i = end + 2
        elif script[i] == '"' or two == '@"':
            verbatim = two == '@"'
            j = i + (2 if verbatim else 1)
            while j < len(script):
                if verbatim and script[j : j + 2] == '""' or not verbatim and script[j] == "\\":
                    j += 2
                elif script[j] == '"':
                    break
                elif script[j] == "\n" and not verbatim:
                    return at(i, "Expected '\"' to close the string literal.")
                else:
                    j += 1
            if j >= len(script):
                return at(i, "Expected '\"' to close the string literal.")
            text[i + 1 : j] = "x" * (j - i - 1)
            i = j + 1
        else:
            if script[i] == "(":
                depth += 1
                opened.append(i)
            elif script[i] == ")":
                if depth == 0:
                    return at(i, "Unexpected ')'.")
                depth -= 1
                opened.pop()
            i += 1
    if depth:
        return at(opened[-1], "Expected ')' to close '('.")
    code = "".join(text)

    start = 0
    for match in re.finditer(r";", code):
        problem = _check_statement(code, start, match.start())
        if problem:
            offset, message = problem
            return at(offset, message)
        start = match.end()
    rest = code[start:]
    if rest.strip():
        offset = start + len(rest) - len(rest.lstrip())
        return at(offset, "Expected ';' at the end of the statement.")
    return None


def _check_statement(code: str, start: int, end: int) -> tuple[int, str] | None:
    statement = code[start:end]
    stripped = statement.lstrip()
    if not stripped:
        return None
    offset = start + len(statement) - len(stripped)
    assignment = re.match(r"@\w+\s*=\s*", stripped)
    if assignment:
        body = stripped[assignment.end() :]
        word = re.match(r"\w+", body)
        if not word or word.group() not in ROWSET_KEYWORDS:
            return (
                offset + assignment.end(),
                "Expected one of: " + " ".join(sorted(ROWSET_KEYWORDS)),
            )
        return _clauses(word.group(), body, offset + assignment.end())
    word = re.match(r"[A-Za-z_]\w*", stripped)
    if not word or word.group() not in STATEMENT_KEYWORDS:
        expected = " ".join(sorted(STATEMENT_KEYWORDS))
        return offset, f"Expected one of: '@' {expected}"
    return _clauses(word.group(), stripped, offset)


def _clauses(keyword: str, statement: str, offset: int) -> tuple[int, str] | None:
    required = {"EXTRACT": ("FROM", "USING"), "OUTPUT": ("TO", "USING")}.get(keyword, ())
    for clause in required:
        if not re.search(rf"\b{clause}\b", statement):
            return offset, f"Expected {clause} in the {keyword} statement."
    return None


@dataclass
class Job:
    job_id: str
    name: str
    script: str
    submitter: str
    degree_of_parallelism: int
    priority: int
    submitted: float = field(default_factory=time.time)
    state: str = "Compiling"
    result: str = "None"
    started: float | None = None
    ended: float | None = None
    errors: list[dict] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    next_at: float = 0.0

    def move(self, state: str, details: str = "") -> None:
        self.state = state
        record = {"newState": state, "timeStamp": iso(time.time()), "requestedByUser": None}
        if details:
            record["details"] = details
        self.audit.append(record)


class DataLakeEmulator(EmulatorServer):
    name = "datalake"

    def __init__(
        self,
        root: Path,
        *,
        account_name: str = "trainyardadla",
        tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
        client_id: str = "5d3e5b52-9d3f-4e53-9d1d-6f6b1e3c2a10",
        client_secret: str | None = None,
        compile_seconds: float = 0.3,
        queued_seconds: float = 0.3,
        running_seconds: float = 0.6,
    ):
        super().__init__(root)
        self.account_name = account_name
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.compile_seconds = compile_seconds
        self.queued_seconds = queued_seconds
        self.running_seconds = running_seconds
        self.tokens: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self._ticker = Ticker(self._advance, name="datalake-jobs")

    def start(self, port: int = 0):
        super().start(port)
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        super().stop()

    def route(self, request: Request) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            return self._token(parts[0], request)
        self._authenticate(request)
        if request.query.get("api-version") != API_VERSION:
            raise AdlaError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{request.query.get('api-version', '')}' is invalid. "
                f"The supported versions are '{API_VERSION}'.",
            )
        with self.lock:
            if parts == ["jobs"] and request.method == "GET":
                return self._list(request)
            if len(parts) >= 2 and parts[0] == "jobs":
                job_id = parts[1]
                if len(parts) == 2 and request.method == "PUT":
                    return Response(200, self._submit(job_id, request))
                job = self.jobs.get(job_id)
                if job is None:
                    raise AdlaError(
                        404, "JobNotFound", f"The job '{job_id}' was not found in the account."
                    )
                if len(parts) == 2 and request.method == "GET":
                    return Response(200, self._job_json(job))
                if parts[2:] == ["CancelJob"] and request.method == "POST":
                    self._cancel(job)
                    return Response(200, None)
        raise AdlaError(404, "NotFound", f"No route for {request.method} {request.path}.")

    def _token(self, tenant: str, request: Request) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}

        def aad_error(status: int, error: str, description: str) -> HttpError:
            return HttpError(
                status,
                {
                    "error": error,
                    "error_description": f"{description}\r\nTrace ID: {uuid.uuid4()}\r\n"
                    f"Timestamp: {iso(time.time())}",
                    "error_codes": [int(description[6 : description.index(":")])],
                },
            )

        if tenant != self.tenant_id:
            raise aad_error(
                400,
                "invalid_request",
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
            )
        if form.get("grant_type") != "client_credentials":
            raise aad_error(
                400,
                "unsupported_grant_type",
                "AADSTS70003: The app requested an unsupported grant type.",
            )
        if form.get("client_id") != self.client_id:
            raise aad_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{form.get('client_id', '')}' was "
                f"not found in the directory '{tenant}'.",
            )
        if form.get("client_secret") != self.client_secret:
            raise aad_error(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret ID, for a secret "
                f"added to app '{self.client_id}'.",
            )
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens.add(token)
        return Response(
            200,
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            },
        )

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer ") or header.removeprefix("Bearer ") not in self.tokens:
            raise HttpError(
                401,
                {
                    "error": {
                        "code": "AuthenticationFailed",
                        "message": "Authentication failed. The 'Authorization' header is missing "
                        "or its bearer token is invalid or expired.",
                    }
                },
                {"WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/"'},
            )

    def _submit(self, job_id: str, request: Request) -> dict:
        try:
            uuid.UUID(job_id)
        except ValueError as exc:
            raise AdlaError(
                400, "InvalidJobId", f"The job identity '{job_id}' must be a GUID."
            ) from exc
        if job_id in self.jobs:
            raise AdlaError(409, "JobIdAlreadyExists", f"A job with id '{job_id}' already exists.")
        body = request.json()
        properties = body.get("properties") or {}
        if body.get("type") != "USql" or properties.get("type") != "USql":
            raise AdlaError(400, "InvalidJobType", "Only U-SQL jobs (type 'USql') are supported.")
        script = properties.get("script") or ""
        if not script.strip():
            raise AdlaError(400, "InvalidRequestContent", "The job script must not be empty.")
        if not body.get("name"):
            raise AdlaError(400, "InvalidRequestContent", "The job needs a name.")
        job = Job(
            job_id=job_id,
            name=body["name"],
            script=script,
            submitter=f"{self.client_id}@{self.tenant_id}",
            degree_of_parallelism=int(body.get("degreeOfParallelism") or 1),
            priority=int(body.get("priority") or 1000),
        )
        directory = self.root / "jobs" / job_id
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "script.usql").write_text(script)
        job.move("Accepted")
        job.move("Compiling")
        job.next_at = time.time() + self.compile_seconds
        self.jobs[job_id] = job
        return self._job_json(job)

    def _cancel(self, job: Job) -> None:
        if job.state == "Ended":
            return
        job.result = "Cancelled"
        job.ended = time.time()
        job.move("Ended", "Cancelled by user")

    def _list(self, request: Request) -> Response:
        top = int(request.query.get("$top") or 100)
        jobs = sorted(self.jobs.values(), key=lambda j: j.submitted, reverse=True)[:top]
        return Response(200, {"value": [self._job_json(j, basic=True) for j in jobs]})

    def _job_json(self, job: Job, *, basic: bool = False) -> dict:
        data = {
            "jobId": job.job_id,
            "name": job.name,
            "type": "USql",
            "submitter": job.submitter,
            "degreeOfParallelism": job.degree_of_parallelism,
            "priority": job.priority,
            "submitTime": iso(job.submitted),
            "startTime": iso(job.started),
            "endTime": iso(job.ended),
            "state": job.state,
            "result": job.result,
            "logFolder": f"adl://{self.account_name}.azuredatalakestore.net/system/jobservice/"
            f"jobs/Usql/{job.job_id}/",
        }
        if basic:
            return data
        data["errorMessage"] = job.errors
        data["stateAuditRecords"] = job.audit
        data["properties"] = {
            "type": "USql",
            "runtimeVersion": "default",
            "script": job.script,
            "diagnostics": job.diagnostics,
            "totalCompilationTime": "PT0.3S",
            "totalQueuedTime": "PT0.3S",
            "totalRunningTime": "PT0.6S",
        }
        return data

    def _advance(self) -> None:
        with self.lock:
            now = time.time()
            for job in self.jobs.values():
                if job.state == "Ended" or now < job.next_at:
                    continue
                if job.state == "Compiling":
                    fault = compile_usql(job.script)
                    if fault:
                        job.errors = [fault.error_json(job.script)]
                        job.diagnostics = [
                            {
                                "lineNumber": fault.line,
                                "columnNumber": fault.start
                                - (job.script.rfind("\n", 0, fault.start) + 1)
                                + 1,
                                "start": fault.start,
                                "end": fault.end,
                                "severity": "Error",
                                "message": fault.error_json(job.script)["message"],
                            }
                        ]
                        job.result = "Failed"
                        job.ended = now
                        job.move("Ended", "Compilation failed")
                    else:
                        job.move("Queued")
                        job.next_at = now + self.queued_seconds
                elif job.state == "Queued":
                    job.started = now
                    job.move("Running")
                    job.next_at = now + self.running_seconds
                elif job.state == "Running":
                    job.result = "Succeeded"
                    job.ended = now
                    job.move("Ended")


@pytest.fixture
def datalake_emulator(tmp_path):
    """A running Data Lake Analytics emulator: `.url` (job endpoint and authority),
    `.account_name`, `.tenant_id`, `.client_id`, `.client_secret`."""
    with DataLakeEmulator(tmp_path / "datalake") as emulator:
        yield emulator
