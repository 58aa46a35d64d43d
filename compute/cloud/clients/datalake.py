"""Azure Data Lake Analytics: U-SQL jobs through the documented job REST API (2016-11-01).

Microsoft's Python package for the service was retired with it, so this is
plain HTTP with `requests`: an Azure AD token from the client-credentials grant
of a service principal (tenant, application id, client secret), then the job
endpoints of the account. A U-SQL job has no stdout: its "log" is the job's
state history and the compiler's diagnostics.
"""

from __future__ import annotations

import time
import uuid
from datetime import date

import requests

from compute.cloud.clients import (
    CANCELED,
    COMPLETED,
    FAILED,
    FINALIZING,
    PREPARING,
    QUEUED,
    RUNNING,
    CloudError,
    endpoint_check,
)
from studio.outbound import checked_session

API_VERSION = "2016-11-01"
RETIRED_ON = date(2024, 2, 29)
RETIREMENT_NOTICE = (
    "Microsoft retired Azure Data Lake Analytics on 2024-02-29. Trainyard keeps it for "
    "existing accounts; new work belongs on another compute target."
)
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
# The resource every Data Lake Analytics token is issued for.
DATALAKE_SCOPE = "https://datalake.azure.net//.default"
NEW_CREDENTIAL_STEPS = (
    "create a new client secret under App registrations → Certificates & secrets in the "
    "Azure portal and edit the credentials of this compute target"
)

_STATES = {
    "Accepted": QUEUED,
    "New": QUEUED,
    "Compiling": PREPARING,
    "Scheduling": QUEUED,
    "Queued": QUEUED,
    "WaitingForCapacity": QUEUED,
    "Starting": PREPARING,
    "Paused": QUEUED,
    "Yielded": QUEUED,
    "Running": RUNNING,
    "Finalizing": FINALIZING,
}
_RESULTS = {"Succeeded": COMPLETED, "Cancelled": CANCELED, "Failed": FAILED}


def default_endpoint(account_name: str) -> str:
    return f"https://{account_name}.azuredatalakeanalytics.net"


class DataLakeAnalytics:
    """One Data Lake Analytics account, reached as an Azure AD service principal."""

    def __init__(
        self,
        *,
        account_name: str,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        endpoint: str = "",
        authority_url: str = DEFAULT_AUTHORITY,
        timeout: float = 30,
    ):
        self.account_name = account_name
        self.endpoint = (endpoint or default_endpoint(account_name)).rstrip("/")
        self.tenant_id = tenant_id
        self.client_id = client_id
        self.authority_url = authority_url.rstrip("/")
        self._secret = client_secret
        self._timeout = timeout
        self._token = ""  # none yet  # nosec B105
        self._token_expires = 0.0
        self._session = checked_session()
        self._endpoints_checked = False

    @classmethod
    def from_target(cls, target) -> DataLakeAnalytics:
        """A client for a Data Lake target: `config["account_name"]`, `["tenant_id"]`,
        `["client_id"]`, optional `["endpoint"]` and `["authority_url"]`, and the client
        secret kept (encrypted) as the target's access token."""
        config = target.config
        return cls(
            account_name=config.get("account_name", ""),
            tenant_id=config.get("tenant_id", ""),
            client_id=config.get("client_id", ""),
            client_secret=target.access_token,
            endpoint=config.get("endpoint", ""),
            authority_url=config.get("authority_url") or DEFAULT_AUTHORITY,
        )

    # --- the backend surface ---

    def check(self) -> dict:
        """The account answers with these credentials: its most recent jobs."""
        jobs = self._request("GET", "/jobs", params={"$top": "5"}).json().get("value", [])
        return {
            "account_name": self.account_name,
            "endpoint": self.endpoint,
            "retired_on": RETIRED_ON.isoformat(),
            "notice": RETIREMENT_NOTICE,
            "recent_jobs": [
                {
                    "job_id": j.get("jobId"),
                    "name": j.get("name"),
                    "state": j.get("state"),
                    "result": j.get("result"),
                }
                for j in jobs
            ],
        }

    def submit(
        self,
        *,
        script: str,
        name: str,
        degree_of_parallelism: int = 1,
        priority: int = 1000,
        job_id: str = "",
    ) -> dict:
        """Submit a U-SQL `script` as job `name`; the job id is a new GUID unless given.

        Submitting a given `job_id` again (a retry) finds the job the first attempt made.
        """
        job_id = job_id or str(uuid.uuid4())
        body = {
            "name": name,
            "type": "USql",
            "degreeOfParallelism": degree_of_parallelism,
            "priority": priority,
            "properties": {"type": "USql", "script": script},
        }
        try:
            info = self._request("PUT", f"/jobs/{job_id}", json=body).json()
        except CloudError as exc:
            if exc.code != "job_exists":
                raise
            info = self._job({"job_id": job_id})
        return {"job_id": info.get("jobId", job_id)}

    def status(self, handle: dict) -> tuple[str, bool, dict]:
        info = self._job(handle)
        state = info.get("state", "")
        result = {
            "service_state": state,
            "result": info.get("result", ""),
            "errors": [_diagnostic(e) for e in info.get("errorMessage") or []],
            "message": "",
        }
        if result["errors"]:
            result["message"] = result["errors"][0]
        if state == "Ended":
            return _RESULTS.get(info.get("result", ""), FAILED), True, result
        return _STATES.get(state, RUNNING), False, result

    def log(self, handle: dict, offset: int = 0) -> bytes:
        """The job's state history and diagnostics as text lines, from byte `offset`."""
        return _log_text(self._job(handle)).encode()[offset:]

    def output(self, handle: dict) -> tuple[bytes, bytes]:
        info = self._job(handle)
        errors = "".join(f"{_diagnostic(e)}\n" for e in info.get("errorMessage") or [])
        return _log_text(info).encode(), errors.encode()

    def cancel(self, handle: dict) -> None:
        self._request("POST", f"/jobs/{handle['job_id']}/CancelJob")

    def collect(self, handle: dict, *, folder: str = "outputs") -> list:
        """Nothing to download: a U-SQL job's OUTPUT goes to its Data Lake Store paths."""
        return []

    # --- helpers ---

    def _job(self, handle: dict) -> dict:
        return self._request("GET", f"/jobs/{handle['job_id']}").json()

    def _access_token(self) -> str:
        if not self._endpoints_checked:
            endpoint_check(self.endpoint)
            endpoint_check(self.authority_url)
            self._endpoints_checked = True
        if self._token and time.time() < self._token_expires - 60:
            return self._token
        url = f"{self.authority_url}/{self.tenant_id}/oauth2/v2.0/token"
        try:
            response = self._session.post(
                url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.client_id,
                    "client_secret": self._secret,
                    "scope": DATALAKE_SCOPE,
                },
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise CloudError(
                "unreachable",
                f"Cannot reach Azure AD at {self.authority_url}: check the authority URL and "
                "that this server can reach it.",
                secrets=(self._secret,),
            ) from exc
        if response.status_code != 200:
            raise self._aad_error(response)
        payload = response.json()
        self._token = payload["access_token"]
        self._token_expires = time.time() + int(payload.get("expires_in", 3599))
        return self._token

    def _aad_error(self, response: requests.Response) -> CloudError:
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        codes = payload.get("error_codes") or []
        code = f"AADSTS{codes[0]}" if codes else payload.get("error", str(response.status_code))
        secrets = (self._secret,)
        if payload.get("error") == "invalid_client":
            return CloudError(
                "unauthenticated",
                f"Azure AD rejected the client secret of application '{self.client_id}' "
                f"({code}): {NEW_CREDENTIAL_STEPS}.",
                secrets=secrets,
            )
        if code == "AADSTS90002":
            return CloudError(
                "tenant_not_found",
                f"Azure AD has no tenant '{self.tenant_id}' ({code}): copy the Directory (tenant) "
                "ID from the app registration's overview page.",
                secrets=secrets,
            )
        if code == "AADSTS700016":
            return CloudError(
                "unauthenticated",
                f"Azure AD has no application '{self.client_id}' in tenant '{self.tenant_id}' "
                f"({code}): copy the Application (client) ID from the app registration's "
                "overview page.",
                secrets=secrets,
            )
        description = (payload.get("error_description") or "").splitlines()
        return CloudError(
            "unauthenticated",
            f"Azure AD refused a token ({code}): {description[0] if description else ''}",
            secrets=secrets,
        )

    def _request(self, method: str, path: str, *, params=None, json=None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._access_token()}"}
        url = f"{self.endpoint}{path}"
        try:
            response = self._session.request(
                method,
                url,
                params={"api-version": API_VERSION, **(params or {})},
                json=json,
                headers=headers,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise CloudError(
                "unreachable",
                f"Cannot reach the Data Lake Analytics account at {self.endpoint}: check the "
                f"account name. {RETIREMENT_NOTICE}",
                secrets=(self._secret, self._token),
            ) from exc
        if response.status_code < 400:
            return response
        try:
            error = response.json().get("error") or {}
        except ValueError:
            error = {}
        code, message = error.get("code", ""), error.get("message", response.reason)
        secrets = (self._secret, self._token)
        if response.status_code == 401:
            self._token = ""  # forgotten: sign in again  # nosec B105
            return_error = CloudError(
                "unauthenticated",
                f"Data Lake Analytics account '{self.account_name}' rejected the Azure AD token "
                f"(401 {code}): check that the tenant and application belong to the account's "
                "subscription.",
                secrets=secrets,
            )
        elif response.status_code == 403:
            return_error = CloudError(
                "permission_denied",
                f"Application '{self.client_id}' may not use Data Lake Analytics account "
                f"'{self.account_name}' (403 {code}): give it the Data Lake Analytics Developer "
                "role on the account.",
                secrets=secrets,
            )
        elif response.status_code == 409:
            return_error = CloudError("job_exists", message, secrets=secrets)
        elif code == "JobNotFound":
            return_error = CloudError(
                "job_not_found",
                f"Data Lake Analytics account '{self.account_name}' has no such job: {message} "
                "Jobs are kept for 30 days.",
                secrets=secrets,
            )
        else:
            return_error = CloudError(
                "service_error",
                f"Data Lake Analytics answered {response.status_code} {code}: {message}",
                secrets=secrets,
            )
        raise return_error


def _diagnostic(error: dict) -> str:
    line = error.get("lineNumber")
    where = f"line {line}: " if line else ""
    return f"{error.get('errorId', 'ERROR')} {where}{error.get('message', '')}".strip()


def _log_text(info: dict) -> str:
    lines = [
        f"{record.get('timeStamp', '')} {record.get('newState', '')}"
        + (f" ({record['details']})" if record.get("details") else "")
        for record in info.get("stateAuditRecords") or []
    ]
    if info.get("state") == "Ended":
        lines.append(f"Result: {info.get('result', '')}")
        lines.extend(_diagnostic(e) for e in info.get("errorMessage") or [])
    return "".join(f"{line}\n" for line in lines)
