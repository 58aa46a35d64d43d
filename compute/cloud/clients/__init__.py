"""Clients for the cloud services a compute target can be: Databricks, Azure Batch, Data Lake.

Each module has one client class with the same small surface, the cloud half
of the compute backend interface:

- `check() -> dict`: reach the service with the credentials, return facts to show
- `submit(...) -> dict`: start the work, return a JSON-able handle to store
- `status(handle) -> (state, finished, result)`
- `log(handle, offset) -> bytes`: the main log from byte `offset` on
- `output(handle) -> (stdout, stderr)`
- `cancel(handle)`
- `collect(handle) -> [(name, download)]`: the run's `outputs/` files as the service
  names them (checked before anything is downloaded), each with a call that downloads it

Every failure a user can cause or fix is a `CloudError` whose message says what
to do next. No message or log line ever holds a token or key.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from studio.outbound import OutboundRefused, outbound_policy
from studio.secrets import redact


class CloudError(Exception):
    """A service refused or failed; `code` is stable for programs, `message` is for people."""

    def __init__(self, code: str, message: str, *, secrets: tuple[str, ...] = ()):
        self.code = code
        self.message = redact(message, secrets)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def endpoint_check(url: str) -> None:
    """Refuse a service URL the operator's rules do not allow, in the user's words.

    The clients' sessions check again at every connection (`checked_session`), so a
    name that resolves elsewhere later is refused there too.
    """
    try:
        outbound_policy().check_host(urlsplit(url).hostname or "")
    except OutboundRefused as exc:
        raise CloudError("not_allowed", exc.message) from None


# The run states (the studio's words) that `status()` maps each service's states onto.
QUEUED = "Queued"
PREPARING = "Preparing"
RUNNING = "Running"
FINALIZING = "Finalizing"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELED = "Canceled"
