"""What the cloud-service emulators share: a threaded HTTP server and real local processes.

Each emulator is a real HTTP server on 127.0.0.1 (a free port) answering in its
service's JSON shapes, so the official clients talk to it as they would to the
service. Submitted work runs as a real subprocess in its own process group,
with stdout/stderr written to files, so logs grow while it runs and a cancel
really ends it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


class HttpError(Exception):
    """Raised by a route: the server answers `status` with `body` (JSON unless bytes)."""

    def __init__(self, status: int, body, headers: dict | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class Request:
    def __init__(self, handler: BaseHTTPRequestHandler, body: bytes):
        parts = urlsplit(handler.path)
        self.method = handler.command
        self.raw_path = parts.path
        self.path = unquote(parts.path)
        self.raw_query = parts.query
        self.query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.headers = handler.headers
        self.body = body

    def json(self) -> dict:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, {"error": "malformed JSON body"}) from exc
        if not isinstance(data, dict):
            raise HttpError(400, {"error": "the JSON body must be an object"})
        return data


class Response:
    def __init__(self, status: int = 200, body=None, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


class EmulatorServer:
    """A ThreadingHTTPServer in a daemon thread; subclasses implement `route(request)`."""

    name = "emulator"

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start() the emulator first"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: with Nagle on, a keep-alive client
            # would wait for a delayed ACK (40 ms) on every request.
            disable_nagle_algorithm = True

            def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
                return

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self, body)
                with emulator.lock:
                    emulator.requests.append((request.method, request.path))
                try:
                    response = emulator.route(request)
                except HttpError as exc:
                    response = Response(exc.status, exc.body, exc.headers)
                self._send(request, response)

            def _send(self, request: Request, response: Response):
                body = response.body
                headers = dict(response.headers)
                if body is None:
                    payload = b""
                elif isinstance(body, bytes):
                    payload = body
                else:
                    payload = json.dumps(body).encode()
                    headers.setdefault("Content-Type", "application/json; charset=utf-8")
                self.send_response(response.status)
                # A HEAD answer carries the size of the body it leaves out.
                headers.setdefault("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if request.method != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"{self.name}-http", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        for process in self.processes():
            process.kill()

    def processes(self) -> list[LocalProcess]:
        return []

    def route(self, request: Request) -> Response:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def http_date(timestamp: float | None = None) -> str:
    return formatdate(timestamp if timestamp is not None else time.time(), usegmt=True)


def new_request_id() -> str:
    return str(uuid.uuid4())


class LocalProcess:
    """A command run in its own process group, stdout and stderr going to files."""

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        stdout_path: Path,
        stderr_path: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.argv = argv
        self.cwd = Path(cwd)
        self.stdout_path = Path(stdout_path)
        self.stderr_path = Path(stderr_path) if stderr_path else None
        self.env = env or {}
        self.popen: subprocess.Popen | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.killed = False
        self.start_error = ""

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with open(self.stdout_path, "ab") as out:
            err = open(self.stderr_path, "ab") if self.stderr_path else None  # noqa: SIM115
            try:
                self.popen = subprocess.Popen(
                    self.argv,
                    cwd=self.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err if err else subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self.start_error = f"{self.argv[0]}: {exc.strerror}"
                self.ended_at = time.time()
            finally:
                if err:
                    err.close()
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        if self.start_error:
            return 127
        if self.popen is None:
            return None
        code = self.popen.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.time()
        return code

    def kill(self, grace: float = 2.0) -> None:
        """SIGTERM to the process group, then SIGKILL after `grace` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.killed = True
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        except ProcessLookupError:
            pass
        self.poll()


class Ticker:
    """Calls `tick()` every `interval` seconds in a daemon thread until stopped."""

    def __init__(self, tick, interval: float = 0.05, name: str = "ticker"):
        self._tick = tick
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self):
        while not self._stop.wait(self._interval):
            self._tick()
