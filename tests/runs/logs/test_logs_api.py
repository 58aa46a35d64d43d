"""The logs API, the download view and the logs page, for each member and a stranger."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from runs.logs import store as logstore
from runs.models import Experiment, Run, RunStatus
from studio.models import ApiToken
from studio.services import membership_remove, token_create, token_revoke

LOG = b"epoch 1 loss 0.9\nepoch 2 loss 0.5\n"


@pytest.fixture(autouse=True)
def log_dir(settings, tmp_path):
    settings.LOG_DIR = tmp_path


@pytest.fixture
def run(workspace, alice):
    experiment = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    run = Run.objects.create(
        workspace=workspace,
        experiment=experiment,
        number=3,
        status=RunStatus.RUNNING,
        target_name="local",
        submitted_by=alice,
    )
    logstore.append(run.pk, "stdout", 0, LOG)
    return run


def logs_url(run, **params) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"/api/v1/runs/{run.pk}/logs?{query}"


@pytest.mark.parametrize("client", ["api_alice", "api_carol", "api_bob", "as_alice"])
def test_members_read_bytes_from_an_offset_with_the_next_offset(run, request, client):
    client = request.getfixturevalue(client)
    response = client.get(logs_url(run, stream="stdout", offset=17))
    assert response.status_code == 200
    assert response.content == b"epoch 2 loss 0.5\n"
    assert response["X-Log-Offset"] == "17"
    assert response["X-Next-Offset"] == str(len(LOG))
    assert response["X-Log-Size"] == str(len(LOG))
    assert response["X-Run-Status"] == "Running"


def test_limit_and_a_negative_offset_give_pages_and_the_tail(run, api_alice):
    first = api_alice.get(logs_url(run, offset=0, limit=6))
    assert first.content == b"epoch "
    assert first["X-Next-Offset"] == "6"
    tail = api_alice.get(logs_url(run, offset=-17))
    assert tail.content == b"epoch 2 loss 0.5\n"
    assert tail["X-Log-Offset"] == "17"
    past_end = api_alice.get(logs_url(run, offset=len(LOG)))
    assert past_end.content == b"" and past_end["X-Next-Offset"] == str(len(LOG))


# Just past the largest offset the API takes (2**53), and past any integer column.
@pytest.mark.parametrize("offset", [2**53 + 1, 2**63, -(2**63)])
def test_an_offset_no_log_can_reach_is_refused(run, api_alice, offset):
    response = api_alice.get(logs_url(run, offset=offset))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["query", "offset"]


def test_streams_are_listed_with_their_sizes(run, api_bob):
    logstore.append(run.pk, "node-1.stdout", 0, b"ready\n")
    response = api_bob.get(f"/api/v1/runs/{run.pk}/logs/streams")
    assert response.status_code == 200
    assert response.json() == [
        {"name": "node-1.stdout", "size": 6},
        {"name": "stdout", "size": len(LOG)},
    ]


def test_a_bad_stream_name_says_where_to_find_the_streams(run, api_alice):
    response = api_alice.get(logs_url(run, stream="../secrets"))
    assert response.status_code == 400
    assert "/logs/streams" in response.json()["detail"]


def test_strangers_get_404_and_anonymous_callers_401(run, api_charlie, as_charlie, client):
    assert api_charlie.get(logs_url(run)).status_code == 404
    assert api_charlie.get(f"/api/v1/runs/{run.pk}/logs/streams").status_code == 404
    assert as_charlie.get(logs_url(run)).status_code == 404
    assert client.get(logs_url(run)).status_code == 401
    assert api_charlie.get(f"/api/v1/runs/{run.pk + 99}/logs").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_follow_streams_until_the_run_ends_and_every_byte_is_sent(run, alice):
    _, token = token_create(user=alice, name="cli")

    async def scenario():
        response = await AsyncClient().get(
            logs_url(run, stream="stdout", offset=6, follow=1),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        assert response["X-Log-Offset"] == "6"
        assert isinstance(response, StreamingHttpResponse)
        chunks = aiter(response.streaming_content)
        received = await anext(chunks)
        assert received == LOG[6:]
        await sync_to_async(logstore.append)(run.pk, "stdout", len(LOG), b"epoch 3 loss 0.2\n")
        received += await anext(chunks)
        # The monitor stores the last bytes, then finishes the run.
        await sync_to_async(logstore.append)(run.pk, "stdout", len(LOG) + 17, b"saved model\n")
        await sync_to_async(Run.objects.filter(pk=run.pk).update)(status=RunStatus.COMPLETED)
        async for chunk in chunks:
            received += chunk
        return received

    received = async_to_sync(scenario)()
    assert received == LOG[6:] + b"epoch 3 loss 0.2\nsaved model\n"


@pytest.mark.parametrize("client", ["as_alice", "as_carol", "as_bob"])
def test_members_see_the_logs_page_and_download_a_whole_log(run, workspace, request, client):
    client = request.getfixturevalue(client)
    page = client.get(reverse("run_logs", args=[workspace.slug, run.pk]))
    assert page.status_code == 200
    assert b"Logs of mnist #3" in page.content
    assert b"data-log-viewer" in page.content
    download = client.get(reverse("run_log_download", args=[workspace.slug, run.pk, "stdout"]))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == LOG
    assert 'filename="mnist-3-stdout.log"' in download["Content-Disposition"]


def test_strangers_get_404_for_the_logs_page_and_download(run, workspace, as_charlie):
    assert as_charlie.get(reverse("run_logs", args=[workspace.slug, run.pk])).status_code == 404
    url = reverse("run_log_download", args=[workspace.slug, run.pk, "stdout"])
    assert as_charlie.get(url).status_code == 404


def test_a_missing_log_and_a_run_of_another_workspace_are_404(run, workspace, as_alice, charlie):
    missing = reverse("run_log_download", args=[workspace.slug, run.pk, "stderr"])
    assert as_alice.get(missing).status_code == 404
    own = charlie.memberships.get().workspace
    assert as_alice.get(reverse("run_logs", args=[own.slug, run.pk])).status_code == 404


def test_the_log_pages_only_answer_reads(run, workspace, as_bob, as_alice):
    url = reverse("run_logs", args=[workspace.slug, run.pk])
    assert as_bob.post(url).status_code == 405
    assert as_alice.post(url).status_code == 405


def end_access(how: str, bob, workspace, token: ApiToken) -> None:
    if how == "removed":
        membership_remove(workspace=workspace, user=bob)
    elif how == "deactivated":
        bob.is_active = False
        bob.save()
    elif how == "revoked":
        token_revoke(token=token)
    else:
        ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())


@pytest.mark.parametrize("how", ["removed", "deactivated", "revoked", "expired"])
@pytest.mark.django_db(transaction=True)
def test_a_followed_log_ends_once_the_caller_may_no_longer_read_it(run, bob, workspace, how):
    token, raw = token_create(user=bob, name="cli")

    async def scenario():
        response = await AsyncClient().get(
            logs_url(run, stream="stdout", follow=1), headers={"Authorization": f"Bearer {raw}"}
        )
        assert response.status_code == 200
        assert isinstance(response, StreamingHttpResponse)
        chunks = aiter(response.streaming_content)
        received = await anext(chunks)
        await sync_to_async(end_access)(how, bob, workspace, token)
        # The run goes on, the response does not.

        async def rest():
            return b"".join([chunk async for chunk in chunks])

        # Access is checked again every second (FOLLOW_CHECK_SECONDS).
        received += await asyncio.wait_for(rest(), timeout=4)
        return received

    assert async_to_sync(scenario)() == LOG
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING
