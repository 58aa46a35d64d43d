"""Shared fixtures: the healthchecks-style cast and the services tests need.

alice owns the workspace, carol contributes, bob only reads, charlie is a
stranger with a workspace of his own.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from channels.layers import channel_layers
from django.test import Client

from studio.models import Role
from studio.services import membership_set, token_create, workspace_create
from tests.factories import UserFactory

pytest_plugins = [
    "tests.services.redis_server",
    "tests.services.live_stack",
    "tests.services.sshd",
    "tests.services.spark",
    "tests.services.netns",
    "tests.services.docker_engine",
    "tests.services.small_disk",
    "tests.emulators.databricks",
    "tests.emulators.batch",
    "tests.emulators.datalake",
    "tests.support.pipelines",
    "tests.support.seed",
    "tests.support.cli",
]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    """Each test gets a channel layer of its own. Every `async_to_sync` runs a new event
    loop, while one layer object keeps asyncio state (its receive lock, its connections)
    from the loop that used it first: a websocket refused in one test's loop could then
    wait for good on what another test's loop left behind. A server has one loop."""
    yield
    channel_layers.backends.clear()


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def carol(db):
    return UserFactory(username="carol")


@pytest.fixture
def charlie(db):
    return UserFactory(username="charlie")


@pytest.fixture
def workspace(alice, bob, carol, charlie):
    ws = workspace_create(name="Vision", owner=alice)
    membership_set(workspace=ws, user=bob, role=Role.READER)
    membership_set(workspace=ws, user=carol, role=Role.CONTRIBUTOR)
    workspace_create(name="Charlie's own", owner=charlie)
    return ws


@pytest.fixture
def shared_dir():
    """A folder a run can read, wherever it runs on this machine: a local run's sandbox
    has a /tmp of its own, and a VM's user is not the test's."""
    path = Path(tempfile.mkdtemp(prefix="ty-shared-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def client_for(user) -> Client:
    # Signing in through the page is tested on its own; login() would bypass django-axes,
    # which needs the request of a real sign-in.
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_alice(alice, workspace):
    return client_for(alice)


@pytest.fixture
def as_bob(bob, workspace):
    return client_for(bob)


@pytest.fixture
def as_carol(carol, workspace):
    return client_for(carol)


@pytest.fixture
def as_charlie(charlie, workspace):
    return client_for(charlie)


def api_client_for(user) -> Client:
    _, raw = token_create(user=user, name="tests")
    return Client(headers={"Authorization": f"Bearer {raw}"})


@pytest.fixture
def api_alice(alice, workspace):
    return api_client_for(alice)


@pytest.fixture
def api_bob(bob, workspace):
    return api_client_for(bob)


@pytest.fixture
def api_carol(carol, workspace):
    return api_client_for(carol)


@pytest.fixture
def api_charlie(charlie, workspace):
    return api_client_for(charlie)


# What a test needs, read from the fixtures it uses (directly or through other fixtures).
# Every such test is also marked `service`: `make test-fast` runs the others.
NEEDS = {
    "docker": {"docker_engine", "fresh_engine_url", "private_engine"},
    "sshd": {"sshd_factory", "netns_host_factory"},
    "spark": {"spark_head_node"},
    "redis": {"spare_redis"},
    "emulator": {"databricks_emulator", "batch_emulator", "datalake_emulator"},
    "stack": {"live_stack"},
    "browser": {"page", "browser", "context"},
}
SERVICE_MARKERS = (*NEEDS, "e2e", "sandbox", "postgres")


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)
        if any(item.get_closest_marker(name) for name in SERVICE_MARKERS):
            item.add_marker("service")
    # Browser tests last: Playwright's sync API leaves an event loop in the main thread,
    # which would break the in-process tests (async_to_sync) that ran after it.
    items.sort(
        key=lambda item: (
            item.get_closest_marker("e2e") is not None
            or item.get_closest_marker("browser") is not None
        )
    )
