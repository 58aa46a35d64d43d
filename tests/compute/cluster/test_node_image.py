"""Building the node image where this server cannot: the message says what to run instead."""

import re
import threading

import pytest

from compute.cluster.node_image import (
    Builder,
    NodeImageError,
    _engine_lock,
    node_image_ensure,
    node_image_rootfs,
)


@pytest.fixture
def empty_cache(settings, tmp_path):
    settings.CLUSTER_NODE_IMAGE_CACHE = tmp_path / "images"
    return settings.CLUSTER_NODE_IMAGE_CACHE


def test_without_debootstrap_it_says_what_to_install_or_run(empty_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no debootstrap on it
    shown: list[str] = []
    with pytest.raises(NodeImageError) as raised:
        node_image_ensure(
            "ssh://ops@gpu-box",
            builder=Builder(workspace_id=1, label="cluster first"),
            progress=shown.append,
        )
    assert str(raised.value) == (
        "debootstrap is not installed on the Trainyard server, so it cannot build the node "
        "image: install it (`apt-get install debootstrap`), or run "
        "`DOCKER_HOST=ssh://ops@gpu-box make node-image` as root on the Trainyard server "
        "where debootstrap is."
    )
    assert shown == []


def test_a_mirror_it_cannot_reach_fails_with_debootstraps_own_words(empty_cache, settings):
    """debootstrap for real (as root), against a mirror address nothing listens on."""
    settings.DEBIAN_MIRROR = "http://127.0.0.1:9/debian"
    shown: list[str] = []
    with pytest.raises(NodeImageError) as raised:
        node_image_rootfs(shown.append)
    message = str(raised.value)
    assert message.startswith(
        f"debootstrap failed (exit 1); the last lines of {empty_cache / 'debootstrap.log'}:\n"
    )
    assert "E: Failed getting release file http://127.0.0.1:9/debian/dists/bookworm/Release" in (
        message
    )
    assert message.endswith(
        "Check that the Trainyard server reaches the Debian mirror http://127.0.0.1:9/debian "
        "(set DEBIAN_MIRROR to one it reaches), then create the cluster again or run "
        "`make node-image` as root on the Trainyard server."
    )
    assert (
        shown[0] == "Running debootstrap bookworm from http://127.0.0.1:9/debian (about a minute)"
    )
    assert not list(empty_cache.glob("*.tar*"))


def test_a_build_waits_for_the_engines_build_and_names_no_other_workspaces_cluster(
    settings, tmp_path
):
    settings.CLUSTER_NODE_IMAGE_CACHE = tmp_path / "images"
    url = "unix:///tmp/ty-no-such-docker.sock"
    shown: list[str] = []
    held = threading.Event()
    release = threading.Event()

    def other_workspace_build():
        with _engine_lock(url, Builder(workspace_id=1, label="cluster secret-project"), print):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=other_workspace_build)
    holder.start()
    held.wait(10)

    def progress(line: str) -> None:
        shown.append(line)
        release.set()

    with pytest.raises(NodeImageError) as raised:
        node_image_ensure(
            url, builder=Builder(workspace_id=2, label="cluster mine"), progress=progress
        )
    holder.join()
    assert re.fullmatch(
        r"Waiting for the node image build started by a cluster of another workspace at "
        r"\d\d:\d\d:\d\d",
        shown[0],
    )
    assert "secret-project" not in " ".join(shown)
    # Once the lock is free it goes on, here to an engine that does not answer.
    assert str(raised.value).startswith(
        f"Could not import the node image: Docker engine at {url} is unreachable ("
    )
