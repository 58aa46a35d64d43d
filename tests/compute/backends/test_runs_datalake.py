"""The Data Lake Analytics client (job REST API, Azure AD token) against the emulator."""

import datetime
import uuid

import pytest

from compute.cloud.clients import CANCELED, COMPLETED, FAILED, RUNNING, CloudError
from compute.cloud.clients.datalake import RETIRED_ON, RETIREMENT_NOTICE, DataLakeAnalytics
from compute.models import ComputeKind, ComputeState, ComputeTarget
from tests.support.cloud import closed_port_url, follow, wait_until

WORD_COUNT = """\
// Count the words of a text file.
DECLARE @input string = "/input/words.txt";
@lines =
    EXTRACT word string
    FROM @input
    USING Extractors.Text(delimiter: '\\n');
@counts =
    SELECT word, COUNT(*) AS n
    FROM @lines
    GROUP BY word;
OUTPUT @counts
TO "/output/counts.csv"
USING Outputters.Csv(outputHeader: true);
"""


def client_for(emulator, **overrides) -> DataLakeAnalytics:
    options = {
        "account_name": emulator.account_name,
        "tenant_id": emulator.tenant_id,
        "client_id": emulator.client_id,
        "client_secret": emulator.client_secret,
        "endpoint": emulator.url,
        "authority_url": emulator.url,
    }
    options.update(overrides)
    return DataLakeAnalytics(**options)


@pytest.fixture
def adla(datalake_emulator):
    return client_for(datalake_emulator)


def test_the_retirement_is_a_fact_the_ui_can_show():
    assert datetime.date(2024, 2, 29) == RETIRED_ON
    assert RETIREMENT_NOTICE.startswith(
        "Microsoft retired Azure Data Lake Analytics on 2024-02-29."
    )


def test_check_reaches_the_account_and_lists_recent_jobs(adla):
    assert adla.check()["recent_jobs"] == []
    adla.submit(script=WORD_COUNT, name="first")

    facts = adla.check()

    assert facts["account_name"] == "trainyardadla"
    assert facts["retired_on"] == "2024-02-29"
    assert facts["notice"] == RETIREMENT_NOTICE
    assert [j["name"] for j in facts["recent_jobs"]] == ["first"]


def test_a_usql_job_moves_through_compiling_queued_running_to_succeeded(adla, datalake_emulator):
    handle = adla.submit(script=WORD_COUNT, name="word count", degree_of_parallelism=2)

    seen, state, result = follow(adla, handle)

    assert seen == ["Preparing", "Queued", "Running", "Completed"]
    assert state == COMPLETED
    assert result["result"] == "Succeeded"
    log = adla.log(handle).decode().splitlines()
    assert [line.split(" ", 1)[1] for line in log[:-1]] == [
        "Accepted",
        "Compiling",
        "Queued",
        "Running",
        "Ended",
    ]
    assert log[-1] == "Result: Succeeded"
    recorded = datalake_emulator.root / "jobs" / handle["job_id"] / "script.usql"
    assert recorded.read_text() == WORD_COUNT
    assert datalake_emulator.jobs[handle["job_id"]].degree_of_parallelism == 2


def test_a_retried_submit_finds_the_job_it_made(adla, datalake_emulator):
    job_id = str(uuid.uuid4())

    first = adla.submit(script=WORD_COUNT, name="retry", job_id=job_id)
    second = adla.submit(script=WORD_COUNT, name="retry", job_id=job_id)

    assert first == second == {"job_id": job_id}
    assert list(datalake_emulator.jobs) == [job_id]


def test_a_syntax_error_fails_the_job_with_a_diagnostic_on_its_line(adla):
    script = WORD_COUNT.replace("    SELECT word", "    select word")

    handle = adla.submit(script=script, name="lower-case keyword")
    _, state, result = follow(adla, handle)

    assert state == FAILED
    assert result["result"] == "Failed"
    assert result["errors"] == [
        "E_CSC_USER_SYNTAXERROR line 8: syntax error. Expected one of: COMBINE EXTRACT "
        "PROCESS REDUCE SELECT VALUES"
    ]
    stdout, stderr = adla.output(handle)
    assert stdout.decode().endswith(
        "Result: Failed\nE_CSC_USER_SYNTAXERROR line 8: syntax error. Expected one of: "
        "COMBINE EXTRACT PROCESS REDUCE SELECT VALUES\n"
    )
    assert stderr.decode() == result["errors"][0] + "\n"


@pytest.mark.parametrize(
    ("script", "line", "message"),
    [
        ('@a = EXTRACT x string FROM "/in" USING Extractors.Csv()', 1, "Expected ';'"),
        ('@a = EXTRACT x string FROM "/in USING Extractors.Csv();', 1, "close the string"),
        ("@a = SELECT COUNT(* AS n FROM @b;", 1, "Expected ')'"),
        ('DECLARE @x string = "a";\nOUTPUT @a USING Outputters.Csv();', 2, "Expected TO"),
    ],
)
def test_other_syntax_errors_are_found(adla, script, line, message):
    handle = adla.submit(script=script, name="broken")

    _, state, result = follow(adla, handle)

    assert state == FAILED
    assert f"line {line}:" in result["errors"][0]
    assert message in result["errors"][0]


def test_cancel_ends_the_job_as_cancelled(datalake_emulator):
    datalake_emulator.running_seconds = 300
    adla = client_for(datalake_emulator)
    handle = adla.submit(script=WORD_COUNT, name="long")
    wait_until(lambda: adla.status(handle)[0] == RUNNING, what="the job to run")

    adla.cancel(handle)
    _, state, result = follow(adla, handle)

    assert state == CANCELED
    assert result["result"] == "Cancelled"
    assert adla.log(handle).decode().splitlines()[-1] == "Result: Cancelled"


def test_a_wrong_client_secret_says_how_to_make_a_new_one(datalake_emulator):
    wrong = "wrong-secret-value-123"
    adla = client_for(datalake_emulator, client_secret=wrong)

    with pytest.raises(CloudError) as caught:
        adla.check()

    assert caught.value.code == "unauthenticated"
    assert str(caught.value) == (
        f"Azure AD rejected the client secret of application '{datalake_emulator.client_id}' "
        "(AADSTS7000215): create a new client secret under App registrations → Certificates "
        "& secrets in the Azure portal and edit the credentials of this compute target."
    )
    assert wrong not in str(caught.value)


def test_an_unknown_tenant_says_where_to_find_the_right_one(datalake_emulator):
    tenant = str(uuid.uuid4())
    adla = client_for(datalake_emulator, tenant_id=tenant)

    with pytest.raises(CloudError) as caught:
        adla.check()

    assert caught.value.code == "tenant_not_found"
    assert str(caught.value) == (
        f"Azure AD has no tenant '{tenant}' (AADSTS90002): copy the Directory (tenant) ID "
        "from the app registration's overview page."
    )


def test_a_token_the_account_does_not_accept_is_reported(datalake_emulator, adla):
    adla.check()
    datalake_emulator.tokens.clear()

    with pytest.raises(CloudError) as caught:
        adla.check()

    assert caught.value.code == "unauthenticated"
    assert str(caught.value).startswith(
        "Data Lake Analytics account 'trainyardadla' rejected the Azure AD token (401 "
        "AuthenticationFailed)"
    )
    # A new token is fetched on the next call.
    assert adla.check()["account_name"] == "trainyardadla"


def test_an_unknown_job_is_reported(adla):
    with pytest.raises(CloudError) as caught:
        adla.status({"job_id": str(uuid.uuid4())})

    assert caught.value.code == "job_not_found"


def test_an_unreachable_account_mentions_the_retirement(datalake_emulator):
    adla = client_for(datalake_emulator, endpoint=closed_port_url())

    with pytest.raises(CloudError) as caught:
        adla.check()

    assert caught.value.code == "unreachable"
    assert RETIREMENT_NOTICE in str(caught.value)


def test_a_compute_target_gives_its_client(db, workspace, alice, datalake_emulator):
    ComputeTarget.objects.create(
        workspace=workspace,
        name="adla",
        kind=ComputeKind.DATALAKE,
        state=ComputeState.SUCCEEDED,
        config={
            "account_name": datalake_emulator.account_name,
            "resource_group": "ml-rg",
            "tenant_id": datalake_emulator.tenant_id,
            "client_id": datalake_emulator.client_id,
            "endpoint": datalake_emulator.url,
            "authority_url": datalake_emulator.url,
        },
        access_token=datalake_emulator.client_secret,
        created_by=alice,
    )
    target = ComputeTarget.objects.get(workspace=workspace, name="adla")

    assert DataLakeAnalytics.from_target(target).check()["account_name"] == "trainyardadla"
