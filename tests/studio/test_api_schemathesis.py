"""Every /api/v1 operation, fuzzed by schemathesis from the API's own OpenAPI schema.

Positive and negative data (and schemathesis' boundary cases) go to the studio in
this process, as the seeded workspace's owner, with ids and names of things that
exist mixed into the generated ones. No answer may be a server error.

Each write runs in a transaction rolled back after it, so the seeded workspace
stays the same for every case (a generated DELETE or cancel does not take a
target or run away from the cases after it) and nothing a case starts in the
background (attach checks, provisioning, runs) ever runs. The bodies that name
an address to connect to get the test's own hosts on 127.0.0.1 whenever they
carry a string there, and `loopback_only` fails the test if anything resolves
or connects beyond the loopback all the same.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.support.seed import Seeded, loopback_hosts

pytestmark = pytest.mark.django_db(transaction=True)

# Per operation and mode; about a minute for the whole API on a CI machine.
MAX_EXAMPLES = 25

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {
            "mode": "all",
            "max-examples": MAX_EXAMPLES,
            # The same cases on every run: the suite fails for a change, not for a draw.
            "deterministic": True,
            "database": "none",
            "no-shrink": True,
        },
        # One request at a time, each rolled back: there is no state to walk through.
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
    }
)


@contextmanager
def in_process_requests():
    """Keep the test's database connection across requests, as Django's test client does:
    a request would otherwise close it, and with it the transaction each case runs in."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


# Integers past what 32- and 64-bit database columns and file offsets hold.
EXTREME_INTEGERS = [-1, 2**31, 2**63, 2**70]


def mixed(generated, existing=()):
    """One that names something that exists, for an integer one at the edges of what storage
    holds, for a string one with a NUL character, or the generated value: the first are drawn
    more often."""
    choices = [st.sampled_from(existing)] if existing else []
    if isinstance(generated, int) and not isinstance(generated, bool):
        choices.append(st.sampled_from(EXTREME_INTEGERS))
    if isinstance(generated, str):
        # A NUL character: PostgreSQL stores no text holding one.
        choices.append(st.just(generated + "\x00"))
    choices.append(st.just(generated))
    return st.one_of(choices)


def mixed_values(values, existing: dict):
    if not isinstance(values, dict):
        return st.just(values)
    return st.fixed_dictionaries(
        {name: mixed(value, existing.get(name, ())) for name, value in values.items()}
    )


@pytest.fixture
def api_schema(seeded: Seeded, sshd, databricks_emulator, batch_emulator, datalake_emulator):
    with in_process_requests():
        schema = schemathesis.openapi.from_wsgi(
            "/api/v1/openapi.json", WSGIHandler(), config=CONFIG
        )
    hosts = loopback_hosts(sshd, databricks_emulator, batch_emulator, datalake_emulator)
    existing = {
        "run_id": [*seeded.run_ids, seeded.stranger_run.pk],
        "name": sorted(seeded.targets.values()),
        "path": [seeded.output, "logs/std_log.txt"],
        "workspace": [seeded.workspace.slug, seeded.stranger_workspace.slug],
        "stream": ["stdout", "stderr"],
    }

    def on_loopback(body):
        """The test's own hosts wherever a body names an address to connect to."""
        if not isinstance(body, dict):
            return body
        hosts_named = {key: hosts[key] for key, value in body.items() if key in hosts}
        body = body | {key: host for key, host in hosts_named.items() if isinstance(body[key], str)}
        if "address" in body and isinstance(body.get("port"), int) and 0 < body["port"] < 65536:
            body["port"] = sshd.port
        return body

    @schema.hook
    def flatmap_path_parameters(context, path_parameters):
        return mixed_values(path_parameters, existing)

    @schema.hook
    def flatmap_query(context, query):
        return mixed_values(query, existing)

    @schema.hook
    def flatmap_body(context, body):
        return mixed_values(body, {}).map(on_loopback)

    with in_process_requests():
        yield schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request):
    """schemathesis labels each operation's subtest through `node._nodeid`, which this
    pytest no longer has under that name."""
    request.node._nodeid = request.node.nodeid


@schema.parametrize()
def test_no_api_operation_answers_a_server_error(case, seeded: Seeded):
    headers = {"Authorization": f"Bearer {seeded.tokens['alice']}"}
    if case.method.upper() in ("GET", "HEAD"):
        # Reads change nothing, and a log `follow` reads the run's status from async code,
        # which closes the connection a rolled-back transaction would run in.
        response = case.call(headers=headers)
    else:
        with transaction.atomic():
            response = case.call(headers=headers)
            transaction.set_rollback(True)
    case.validate_response(response, checks=[not_a_server_error])


def test_the_guard_refuses_an_address_beyond_the_loopback():
    """What `loopback_only` stands on: armed, a connection or a name lookup beyond 127.0.0.0/8
    is refused before a packet leaves, and recorded for the test to fail on."""
    import socket

    from tests.support.seed import _outbound

    _outbound.attempts.clear()
    _outbound.armed = True
    try:
        with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
            sock.connect(("192.0.2.1", 22))
        with pytest.raises(ConnectionRefusedError):
            socket.getaddrinfo("example.com", 443)
        with socket.create_server(("127.0.0.1", 0)) as server:
            socket.create_connection(server.getsockname(), timeout=1).close()
    finally:
        _outbound.armed = False
    assert _outbound.attempts == ["socket.connect '192.0.2.1'", "socket.getaddrinfo 'example.com'"]
    _outbound.attempts.clear()
