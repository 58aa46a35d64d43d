"""The image managed-cluster nodes run: built here, imported into each engine that lacks it.

There is no registry to pull from, so its root file system comes from
debootstrap on the Trainyard server; the tarball is cached (in
CLUSTER_NODE_IMAGE_CACHE) so every later engine only imports it. The tag
carries the image's version: a change of what the image holds bumps it, so an
engine with an older image gets the new one instead of keeping it.

One build per engine at a time: a lock file per engine URL, held for the whole
build, makes a second cluster on the same engine wait for the first one's build
and then find the image there.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from django.conf import settings
from django.utils import timezone

from compute.cluster.engines import ENGINE_ERRORS, unreachable_message

NODE_IMAGE_VERSION = 2
NODE_IMAGE = f"trainyard/node:bookworm-{NODE_IMAGE_VERSION}"
SUITE = "bookworm"
PACKAGES = ("python3-minimal", "python3", "procps", "openssh-server")
# Importing a few hundred MB into a remote engine can take longer than the API timeout.
IMPORT_TIMEOUT_SECONDS = 900
LOG_TAIL_LINES = 20
# How often a running build rewrites its progress (each write is a database update).
PROGRESS_SECONDS = 1.0
WAIT_POLL_SECONDS = 1.0

Progress = Callable[[str], None]


class NodeImageError(Exception):
    """The node image cannot be built here; the message says what to run instead."""


@dataclass(frozen=True)
class Builder:
    """Who holds an engine's build lock, as the ones waiting for it are told."""

    workspace_id: int | None
    label: str


def node_image_buildable() -> bool:
    """Trainyard builds only its own node image, never one CLUSTER_NODE_IMAGE names instead."""
    return settings.CLUSTER_NODE_IMAGE == NODE_IMAGE


def node_image_tarball() -> Path:
    return Path(settings.CLUSTER_NODE_IMAGE_CACHE) / f"node-{SUITE}-{NODE_IMAGE_VERSION}.tar"


def manual_command(url: str) -> str:
    """What to run on the Trainyard server instead of letting the studio build."""
    if url == settings.CLUSTER_DEFAULT_ENGINE_URL:
        return "`make node-image` as root on the Trainyard server"
    return f"`DOCKER_HOST={url} make node-image` as root on the Trainyard server"


def node_image_build_problem(url: str) -> str:
    """Why this server cannot build the image for the engine at `url`, or "" when it can."""
    if not node_image_buildable():
        return (
            f"CLUSTER_NODE_IMAGE names {settings.CLUSTER_NODE_IMAGE}, which Trainyard does not "
            "build: load that image into the engine (`docker load`), or unset "
            f"CLUSTER_NODE_IMAGE so Trainyard builds and uses {NODE_IMAGE}."
        )
    if _tarball_ready():
        return ""
    if shutil.which("debootstrap") is None:
        return (
            "debootstrap is not installed on the Trainyard server, so it cannot build the node "
            f"image: install it (`apt-get install debootstrap`), or run {manual_command(url)} "
            "where debootstrap is."
        )
    if os.geteuid() != 0:
        return (
            "Building the node image needs root (debootstrap), and the studio does not run as "
            f"root: run {manual_command(url)} once."
        )
    return ""


def node_image_present(client: docker.DockerClient) -> bool:
    try:
        client.images.get(settings.CLUSTER_NODE_IMAGE)
    except docker.errors.ImageNotFound:
        return False
    return True


def node_image_ensure(url: str, *, builder: Builder, progress: Progress) -> str:
    """Give the engine at `url` the node image unless it has it; what was done, in a sentence.

    Raises NodeImageError when it cannot, saying what to run instead.
    """
    problem = node_image_build_problem(url)
    if problem:
        raise NodeImageError(problem)
    with _engine_lock(url, builder, progress):
        client = None
        try:
            client = docker.DockerClient(base_url=url, timeout=IMPORT_TIMEOUT_SECONDS)
            if node_image_present(client):
                return f"{NODE_IMAGE} is there: another build on this engine made it"
            started = time.monotonic()
            tarball = node_image_rootfs(progress)
            size_mb = tarball.stat().st_size / 1e6
            progress(f"Importing the root file system ({size_mb:.0f} MB) into the engine")
            client.api.import_image_from_file(
                str(tarball),
                repository=NODE_IMAGE.split(":")[0],
                tag=NODE_IMAGE.split(":")[1],
                changes=['CMD ["/bin/bash"]'],
            )
            if not node_image_present(client):
                raise NodeImageError(
                    f"The engine accepted the root file system but has no {NODE_IMAGE} "
                    f"afterwards: run {manual_command(url)} and read its output."
                )
        except ENGINE_ERRORS as exc:
            raise NodeImageError(
                f"Could not import the node image: {unreachable_message(url, exc)}"
            ) from exc
        finally:
            if client is not None:
                client.close()
    return f"Built {NODE_IMAGE} in {time.monotonic() - started:.0f} s"


@contextmanager
def _engine_lock(url: str, builder: Builder, progress: Progress):
    """Hold the engine's build lock, telling `progress` whose build it waits for meanwhile."""
    locks = Path(settings.CLUSTER_NODE_IMAGE_CACHE) / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    holder_path = locks / f"{key}.json"
    with open(locks / f"{key}.lock", "a+") as lock:
        shown = ""
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiting = _waiting_message(holder_path, builder)
                if waiting != shown:
                    progress(waiting)
                    shown = waiting
                time.sleep(WAIT_POLL_SECONDS)
        try:
            holder_path.write_text(
                json.dumps(
                    {
                        "workspace_id": builder.workspace_id,
                        "label": builder.label,
                        "started_at": timezone.localtime().strftime("%H:%M:%S"),
                    }
                )
            )
            yield
        finally:
            holder_path.unlink(missing_ok=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def _waiting_message(holder_path: Path, builder: Builder) -> str:
    try:
        holder = json.loads(holder_path.read_text())
    except (OSError, ValueError):
        return "Waiting for the node image build started by another cluster on this engine"
    # Another workspace's cluster names are not this workspace's to see; a build
    # started by hand (no workspace) hides nothing.
    shown = holder["workspace_id"] in (None, builder.workspace_id)
    by = holder["label"] if shown else "a cluster of another workspace"
    return f"Waiting for the node image build started by {by} at {holder['started_at']}"


def _tarball_ready() -> bool:
    tarball = node_image_tarball()
    return tarball.is_file() and tarball.stat().st_size > 0


def node_image_rootfs(progress: Progress) -> Path:
    """The cached root file system tarball, made with debootstrap first if need be."""
    tarball = node_image_tarball()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Engines share the tarball: one debootstrap at a time for all of them.
    with open(tarball.parent / "rootfs.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _tarball_ready():
            return tarball
        with tempfile.TemporaryDirectory(prefix="trainyard-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            _debootstrap(rootfs, tarball.parent / "debootstrap.log", progress)
            # Every node generates its own host keys when it starts: keys baked into
            # the image would be shared by every node of every cluster.
            for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
                key.unlink()
            progress("Packing the root file system")
            # A temporary name first: an interrupted build never leaves a truncated
            # tarball that later builds would trust.
            part = tarball.with_suffix(".tar.part")
            subprocess.run(
                ["tar", "-C", str(rootfs), "-cf", str(part), "."], check=True, capture_output=True
            )
            part.replace(tarball)
    return tarball


_PHASES = (
    ("Retrieving", "Downloading packages"),
    ("Extracting", "Extracting the base system"),
    ("Unpacking", "Installing packages"),
    ("Configuring", "Installing packages"),
)
_STEP_RE = re.compile(r"^I: (Retrieving|Extracting|Unpacking|Configuring) ")


def _debootstrap(rootfs: Path, log_path: Path, progress: Progress) -> None:
    mirror = settings.DEBIAN_MIRROR
    progress(f"Running debootstrap {SUITE} from {mirror} (about a minute)")
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(rootfs),
        mirror,
    ]
    counts = {verb: 0 for verb, _ in _PHASES}
    started = last_shown = time.monotonic()
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        ) as process,
    ):
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            match = _STEP_RE.match(line)
            if match:
                counts[match.group(1)] += 1
            if time.monotonic() - last_shown >= PROGRESS_SECONDS:
                last_shown = time.monotonic()
                progress(_debootstrap_progress(counts, time.monotonic() - started))
        status = process.wait()
    if status != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        raise NodeImageError(
            f"debootstrap failed (exit {status}); the last lines of {log_path}:\n"
            + "\n".join(tail)
            + "\nCheck that the Trainyard server reaches the Debian mirror "
            f"{mirror} (set DEBIAN_MIRROR to one it reaches), then create the cluster again "
            "or run `make node-image` as root on the Trainyard server."
        )


def _debootstrap_progress(counts: dict[str, int], seconds: float) -> str:
    """Where debootstrap is: its phase and packages so far (the total is known once downloaded)."""
    fetched = counts["Retrieving"]
    if counts["Unpacking"] or counts["Configuring"]:
        done = counts["Unpacking"] + counts["Configuring"]
        # Each package is unpacked then configured: two steps each.
        percent = min(99, 40 + 60 * done // max(1, 2 * fetched))
        what = f"Installing packages ({counts['Configuring']} of {fetched} configured)"
    elif counts["Extracting"]:
        percent = 35
        what = f"Extracting the base system ({counts['Extracting']} packages)"
    else:
        percent = min(30, fetched // 4)
        what = f"Downloading packages ({fetched} so far)"
    return f"{what}, about {percent}% · {seconds:.0f} s"
