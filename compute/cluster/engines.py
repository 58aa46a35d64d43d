"""Docker engines that host managed-cluster nodes: connecting, checking, sizing.

An engine URL is what the docker SDK accepts: `unix:///var/run/docker.sock`
(the local engine), `tcp://host:2376`, or `ssh://user@host[:port]`, which the
SDK speaks through paramiko with this server's SSH keys and ~/.ssh/config.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import urlsplit

import docker
import paramiko
from django.conf import settings
from django.utils import timezone
from docker.errors import DockerException

from compute.cluster.sizes import GIB, VmSize
from compute.models import DockerEngine
from studio.outbound import (
    DEFAULT_PORTS,
    OutboundRefused,
    checked_session,
    detailed_errors_for,
    outbound_policy,
    pinned_url,
)
from studio.outbound import unreachable_message as plain_unreachable_message

log = logging.getLogger(__name__)

ENGINE_URL_SCHEMES = ("unix://", "tcp://", "ssh://", "http://", "https://")
CLIENT_TIMEOUT_SECONDS = 30

# What talking to an engine can raise: Docker API errors, sockets and HTTP
# (requests' errors are OSErrors), and SSH for ssh:// engines.
ENGINE_ERRORS = (DockerException, OSError, paramiko.SSHException)

_clients: dict[str, docker.DockerClient] = {}
_clients_lock = threading.Lock()
# Opening an ssh:// client is a handshake: one engine that hangs there must not
# hold up clients of the others.
_connect_locks: dict[str, threading.Lock] = {}
# Probes the cluster wizard stops waiting for go on here, one at a time per engine.
_probe_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="engine-probe")
_probes: dict[str, Future[EngineFacts]] = {}
_probes_lock = threading.Lock()


class EngineError(Exception):
    """An engine cannot be used; the message says what to do.

    `unreachable`: the engine did not answer (rather than the rules refusing it).
    """

    def __init__(self, message: str, *, unreachable: bool = False):
        super().__init__(message)
        self.unreachable = unreachable


def engine_url_check(url: str) -> None:
    """Refuse an engine URL the operator's rules do not allow (its own default engine passes)."""
    if url == settings.CLUSTER_DEFAULT_ENGINE_URL:
        return
    try:
        outbound_policy().check_url(url)
    except OutboundRefused as exc:
        raise EngineError(exc.message) from None


def engine_client(url: str) -> docker.DockerClient:
    """A client for `url`, kept per process: an ssh:// engine costs a handshake to open."""
    with _clients_lock:
        connect_lock = _connect_locks.setdefault(url, threading.Lock())
    with connect_lock:
        client = _clients.get(url)
        if client is None:
            engine_url_check(url)
            operators = url == settings.CLUSTER_DEFAULT_ENGINE_URL
            try:
                # Plain HTTP goes to the address just checked: the client asks the engine
                # for its API version as it is made, before a session could be checked.
                base_url = url
                if not operators and url.startswith(("tcp://", "http://")):
                    base_url = pinned_url(url)
                client = docker.DockerClient(base_url=base_url, timeout=CLIENT_TIMEOUT_SECONDS)
            except OutboundRefused as exc:
                raise EngineError(exc.message) from None
            except ENGINE_ERRORS as exc:
                raise EngineError(
                    unreachable_message(url, exc), unreachable=_unanswered(exc)
                ) from exc
            if not operators and url.startswith(("tcp://", "http://", "https://")):
                # Every later connection goes to an address checked then.
                checked_session(client.api)
            with _clients_lock:
                _clients[url] = client
        return client


def engine_client_forget(url: str) -> None:
    """Drop a cached client after an error, so the next call reconnects."""
    with _clients_lock:
        client = _clients.pop(url, None)
    if client is not None:
        client.close()


def _unanswered(exc: BaseException | None) -> bool:
    """Whether nothing answered as an engine or an SSH server (rather than refusing a login).

    A port that is closed, filtered or not SSH fails with a socket error, or with
    paramiko not reading an SSH banner.
    """
    while exc is not None:
        if isinstance(exc, OSError) or (
            isinstance(exc, paramiko.SSHException) and "banner" in str(exc)
        ):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _where(url: str) -> str:
    """host:port of an engine URL, for messages."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname:
        return url
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port or DEFAULT_PORTS.get(parts.scheme, '')}".rstrip(":")


def unreachable_message(url: str, exc: Exception) -> str:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if url.startswith("unix://"):
        hint = (
            "Is dockerd running on the Trainyard server? Start it (for example with "
            "scripts/start-dockerd.sh) and check that Trainyard may use the socket."
        )
    elif url.startswith("ssh://"):
        hint = (
            "Check that the Trainyard server can `ssh` to that host with its own key "
            "(no password prompt) and that the user may run `docker`."
        )
    else:
        hint = "Check the address and that dockerd listens there."
    return f"Docker engine at {url} is unreachable ({detail}). {hint}"


@dataclass(frozen=True)
class EngineFacts:
    cpus: int
    memory_bytes: int
    gpu_runtime: bool
    server_version: str
    node_image: bool
    # None when the engine does not tell (it lists GPUs as CDI devices from Docker 28 on).
    gpus: int | None = None

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / GIB

    def as_dict(self) -> dict:
        return {
            "cpus": self.cpus,
            "memory_bytes": self.memory_bytes,
            "gpu_runtime": self.gpu_runtime,
            "server_version": self.server_version,
            "node_image": self.node_image,
            "gpus": self.gpus,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EngineFacts | None:
        if not data:
            return None
        return cls(
            cpus=data["cpus"],
            memory_bytes=data["memory_bytes"],
            gpu_runtime=data["gpu_runtime"],
            server_version=data.get("server_version", ""),
            node_image=data.get("node_image", False),
            gpus=data.get("gpus"),
        )


def engine_probe(url: str) -> EngineFacts:
    """Ask the engine what it has; raises EngineError when it does not answer."""
    try:
        client = engine_client(url)
        info = client.info()
        try:
            client.images.get(settings.CLUSTER_NODE_IMAGE)
            has_image = True
        except docker.errors.ImageNotFound:
            has_image = False
    except ENGINE_ERRORS as exc:
        engine_client_forget(url)
        raise EngineError(unreachable_message(url, exc), unreachable=_unanswered(exc)) from exc
    return EngineFacts(
        cpus=int(info.get("NCPU") or 0),
        memory_bytes=int(info.get("MemTotal") or 0),
        gpu_runtime="nvidia" in (info.get("Runtimes") or {}),
        server_version=str(info.get("ServerVersion", "")),
        node_image=has_image,
        gpus=engine_gpu_count(info),
    )


def engine_gpu_count(info: dict) -> int | None:
    """The NVIDIA GPUs in the engine's CDI devices (`docker info`), or None when it lists none.

    The NVIDIA toolkit names each GPU by its index (nvidia.com/gpu=0) or its
    UUID (nvidia.com/gpu=GPU-…), next to `all` and MIG slices (0:1); an engine
    without CDI specs may still have GPUs behind the nvidia runtime, so no
    listed GPU means unknown, not none.
    """
    names = [
        device.get("ID", "").removeprefix("nvidia.com/gpu=")
        for device in info.get("DiscoveredDevices") or []
        if device.get("Source") == "cdi" and device.get("ID", "").startswith("nvidia.com/gpu=")
    ]
    count = sum(name.isdigit() for name in names) or sum(name.startswith("GPU-") for name in names)
    return count or None


def engine_check(engine: DockerEngine) -> EngineFacts | None:
    """Probe an engine and keep what was found (or why it failed) on the row."""
    try:
        facts = engine_probe(engine.url)
    except EngineError as exc:
        return _check_record(engine, exc)
    return _check_record(engine, facts)


def engines_check_briefly(engines: list[DockerEngine], *, seconds: float) -> list[DockerEngine]:
    """Probe the engines together for at most `seconds`; the engines that did not answer.

    Their probes go on in the background, and the next call waits for the same
    probe again instead of starting another; their rows keep what the last
    check found.
    """
    probes = {engine.pk: _probe_started(engine.url) for engine in engines}
    wait(probes.values(), timeout=seconds)
    silent = []
    for engine in engines:
        probe = probes[engine.pk]
        if not probe.done():
            silent.append(engine)
            continue
        try:
            _check_record(engine, probe.result())
        except EngineError as exc:
            _check_record(engine, exc)
    return silent


def _probe_started(url: str) -> Future[EngineFacts]:
    with _probes_lock:
        probe = _probes.get(url)
        if probe is None or probe.done():
            probe = _probes[url] = _probe_pool.submit(engine_probe, url)
        return probe


def _check_record(engine: DockerEngine, found: EngineFacts | EngineError) -> EngineFacts | None:
    engine.checked_at = timezone.now()
    if isinstance(found, EngineError):
        engine.error = str(found)
        # A local socket (allowed by the operator) maps no network: its details stay.
        network = not engine.url.startswith("unix://")
        if found.unreachable and network and not detailed_errors_for(engine.created_by):
            log.info("Docker engine %s: %s", engine.pk, found)
            engine.error = plain_unreachable_message(_where(engine.url))
        engine.save(update_fields=["error", "checked_at"])
        return None
    engine.facts = found.as_dict()
    engine.error = ""
    engine.reachable_at = engine.checked_at
    engine.save(update_fields=["facts", "error", "checked_at", "reachable_at"])
    return found


def node_image_missing_message(engine_name: str) -> str:
    return (
        f"The node image {settings.CLUSTER_NODE_IMAGE} is missing on Docker engine "
        f"{engine_name} (removed since the cluster was created?). Creating a cluster on that "
        "engine builds it again, or run `make node-image` as root on the Trainyard server "
        "(with DOCKER_HOST set to the engine's URL for a remote engine); nothing is pulled."
    )


@dataclass(frozen=True)
class NodeLimits:
    """The container limits a node of `size` gets on an engine."""

    cpus: float
    memory_bytes: int
    cpu_capped: bool

    @property
    def nano_cpus(self) -> int:
        return int(self.cpus * 1_000_000_000)


def size_fit_problem(size: VmSize, facts: EngineFacts, engine_name: str) -> str:
    """Why a node of `size` cannot live on this engine, or "" when it can.

    CPU time can be shared, so a size with more vCPUs than the engine is capped
    to the engine's CPUs. Memory and GPUs cannot be conjured: a size needing
    more than the engine has is refused, naming the limit (the GPU count only
    where the engine tells it).
    """
    if size.gpus and not facts.gpu_runtime:
        return (
            f"{size.name} has {size.gpus} GPU{'s' if size.gpus > 1 else ''}, but Docker engine "
            f"{engine_name} has no GPUs (nvidia is not among its runtimes): pick a CPU size, "
            "or register an engine with the NVIDIA container runtime"
        )
    if facts.gpus is not None and size.gpus > facts.gpus:
        has = f"{facts.gpus} GPU{'s' if facts.gpus > 1 else ''}"
        return (
            f"{size.name} has {size.gpus} GPUs, but Docker engine {engine_name} has {has}: "
            f"pick a size with at most {has}, or register an engine with more GPUs"
        )
    if size.memory_bytes > facts.memory_bytes:
        return (
            f"{size.name} needs {size.memory_gib:g} GiB of memory, but Docker engine "
            f"{engine_name} has {facts.memory_gib:.1f} GiB: pick a size with less memory, "
            "or register a larger engine"
        )
    return ""


def node_limits(size: VmSize, facts: EngineFacts) -> NodeLimits:
    """The size's vCPUs capped to the engine's CPUs, and its memory (checked to fit)."""
    cpus = float(min(size.vcpus, facts.cpus)) if facts.cpus else float(size.vcpus)
    return NodeLimits(cpus=cpus, memory_bytes=size.memory_bytes, cpu_capped=cpus < size.vcpus)
