import html

import pytest
from django.urls import reverse

from studio.models import Membership, Role

PAGES = [
    "home",
    "compute_list",
    "experiment_list",
    "run_list",
    "environment_list",
    "workspace_settings",
]


@pytest.mark.parametrize("page", PAGES)
def test_members_see_every_page(page, workspace, as_alice, as_bob, as_carol):
    url = reverse(page, args=[workspace.slug])
    for client in (as_alice, as_bob, as_carol):
        response = client.get(url)
        assert response.status_code == 200
        assert b"Vision" in response.content


@pytest.mark.parametrize("page", PAGES)
def test_stranger_gets_404(page, workspace, as_charlie):
    assert as_charlie.get(reverse(page, args=[workspace.slug])).status_code == 404


@pytest.mark.parametrize("page", PAGES)
def test_anonymous_is_sent_to_login(page, workspace, client):
    response = client.get(reverse(page, args=[workspace.slug]))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_compute_detail_of_local_target(workspace, as_bob, as_charlie):
    url = reverse("compute_detail", args=[workspace.slug, "local"])
    assert b"Local" in as_bob.get(url).content
    assert as_charlie.get(url).status_code == 404


def test_root_opens_the_users_workspace(workspace, as_bob):
    response = as_bob.get("/")
    assert response["Location"] == reverse("home", args=[workspace.slug])


def test_user_without_workspace_is_offered_to_create_one(db, client, settings):
    from tests.factories import UserFactory

    settings.WORKSPACE_CREATORS = "everyone"
    client.force_login(UserFactory(username="dave"))
    response = client.get("/", follow=True)
    assert b"New workspace" in response.content
    response = client.post(reverse("workspace_new"), {"name": "Dave's lab"}, follow=True)
    assert b"Dave&#x27;s lab" in response.content
    assert Membership.objects.get(user__username="dave").role == Role.OWNER


def test_by_default_only_staff_create_workspaces(db, client):
    from tests.factories import UserFactory

    dave = UserFactory.create(username="dave")
    client.force_login(dave)
    response = client.get("/", follow=True)
    assert response.status_code == 403
    assert b"Only staff create workspaces on this server" in response.content
    assert b"Create workspace" not in response.content
    response = client.post(reverse("workspace_new"), {"name": "Dave's lab"})
    assert response.status_code == 403
    assert not Membership.objects.filter(user=dave).exists()
    dave.is_staff = True
    dave.save()
    response = client.post(reverse("workspace_new"), {"name": "Dave's lab"}, follow=True)
    assert Membership.objects.get(user=dave).role == Role.OWNER


def test_home_shows_empty_states_with_calls_to_action(workspace, as_alice, as_bob):
    page = as_alice.get(reverse("home", args=[workspace.slug])).content.decode()
    assert "No runs yet" in page
    assert f'href="{reverse("run_submit", args=[workspace.slug])}">Submit a run</a>' in page
    assert "Create an experiment" in page
    assert "Only the built-in <strong>local</strong> target so far" in page
    assert "Add compute" in page
    # A reader is not offered actions they may not take.
    page = as_bob.get(reverse("home", args=[workspace.slug])).content.decode()
    assert "No runs yet" in page and "Add compute" not in page
    assert "Submit a run" not in page


def test_home_lists_recent_runs_and_compute(workspace, alice, as_bob):
    from runs.models import Experiment, Run

    exp = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    run = Run.objects.create(
        workspace=workspace,
        experiment=exp,
        number=1,
        status="Running",
        target_name="local",
        submitted_by=alice,
    )
    page = as_bob.get(reverse("home", args=[workspace.slug])).content.decode()
    run_url = reverse("run_detail", args=[workspace.slug, run.pk])
    assert f'<a href="{run_url}">mnist #1</a>' in page and "Running" in page and ">local<" in page
    assert as_bob.get(run_url).status_code == 200


def test_home_compute_empty_state_says_what_there_is(workspace, alice, as_alice):
    from compute.models import ComputeKind, ComputeState, ComputeTarget

    url = reverse("home", args=[workspace.slug])
    ComputeTarget.objects.filter(workspace=workspace).delete()
    page = as_alice.get(url).content.decode()
    assert "No compute targets yet" in page and "Add compute" in page
    assert "Only the built-in" not in page

    ComputeTarget.objects.create(
        workspace=workspace,
        name="gpu-vm",
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        created_by=alice,
    )
    page = as_alice.get(url).content.decode()
    assert ">gpu-vm</a>" in page
    assert "No compute targets yet" not in page and "Only the built-in" not in page


def test_nav_has_the_studio_sections_and_switcher(workspace, as_alice):
    page = as_alice.get(reverse("home", args=[workspace.slug])).content.decode()
    for label in ("Home", "Experiments", "Runs", "Compute", "Environments", "Settings"):
        assert f">{label}</a>" in page
    assert '<label for="workspace-switcher">Workspace</label>' in page


def test_owner_manages_members_reader_cannot(workspace, alice, bob, charlie, as_alice, as_bob):
    url = reverse("workspace_settings", args=[workspace.slug])
    add = {"username": "charlie", "email": charlie.email, "role": "contributor"}
    assert as_bob.post(url, add).status_code == 403
    as_alice.post(url, add)
    assert Membership.objects.get(workspace=workspace, user=charlie).role == Role.CONTRIBUTOR

    update = reverse("member_update", args=[workspace.slug, bob.pk])
    as_alice.post(update, {"role": "contributor"})
    assert Membership.objects.get(workspace=workspace, user=bob).role == Role.CONTRIBUTOR
    as_alice.post(update, {"remove": "1"})
    assert not Membership.objects.filter(workspace=workspace, user=bob).exists()


def test_last_owner_cannot_be_demoted(workspace, alice, as_alice):
    update = reverse("member_update", args=[workspace.slug, alice.pk])
    response = as_alice.post(update, {"role": "reader"}, follow=True)
    assert b"at least one owner" in response.content
    assert Membership.objects.get(workspace=workspace, user=alice).role == Role.OWNER


def added_message(response) -> str:
    return html.unescape(response.content.decode()).split('<p class="msg msg-')[1].split("</p>")[0]


def test_adding_a_member_does_not_tell_an_owner_which_user_names_exist(
    workspace, charlie, as_alice
):
    url = reverse("workspace_settings", args=[workspace.slug])
    form = as_alice.get(url).content.decode()
    assert '<label for="id_email">Their e-mail address' in form

    answers = {}
    for username, email in [
        ("nobody", "nobody@example.com"),
        ("charlie", "not-charlies@example.com"),
        ("charlie", charlie.email.upper()),
    ]:
        response = as_alice.post(
            url, {"username": username, "email": email, "role": "reader"}, follow=True
        )
        message = added_message(response).replace(email, "EMAIL")
        answers[username, email] = message.replace(username, "NAME")
    assert len(set(answers.values())) == 1, answers
    assert answers["nobody", "nobody@example.com"] == (
        'info">If a user called NAME has the e-mail address EMAIL, they are now Reader and '
        "listed among the members. Not listed? Check both with them, or ask an administrator."
    )
    assert Membership.objects.get(workspace=workspace, user=charlie).role == Role.READER
    assert not Membership.objects.filter(workspace=workspace, user__username="nobody").exists()

    without_email = as_alice.post(url, {"username": "nobody", "role": "reader"})
    assert "This field is required." in without_email.content.decode()


def test_a_staff_owner_adds_by_user_name_and_is_told_who_does_not_exist(
    workspace, alice, charlie, as_alice
):
    alice.is_staff = True
    alice.save()
    url = reverse("workspace_settings", args=[workspace.slug])
    response = as_alice.post(url, {"username": "nobody", "role": "reader"})
    assert "No active user called “nobody”" in response.content.decode()
    added = as_alice.post(url, {"username": "charlie", "role": "reader"}, follow=True)
    assert "charlie is now Reader." in added.content.decode()


def test_adding_an_existing_member_changes_nothing(workspace, alice, bob, as_alice):
    url = reverse("workspace_settings", args=[workspace.slug])
    # Not even the last owner's own role: that goes through the list, which keeps an owner.
    response = as_alice.post(
        url, {"username": "alice", "email": alice.email, "role": "reader"}, follow=True
    )
    assert "alice is already a member: change their role in the list." in html.unescape(
        response.content.decode()
    )
    assert Membership.objects.get(workspace=workspace, user=alice).role == Role.OWNER


@pytest.mark.parametrize(
    ("who", "status"), [("as_charlie", 404), ("as_bob", 403), ("as_carol", 403)]
)
def test_only_the_owner_changes_a_members_role(who, status, request, workspace, bob, carol):
    update = reverse("member_update", args=[workspace.slug, carol.pk])
    client = request.getfixturevalue(who)
    assert client.post(update, {"role": "owner"}).status_code == status
    assert client.post(update, {"remove": "1"}).status_code == status
    assert Membership.objects.get(workspace=workspace, user=carol).role == Role.CONTRIBUTOR


def test_owner_changes_a_members_role(workspace, carol, as_alice):
    update = reverse("member_update", args=[workspace.slug, carol.pk])
    response = as_alice.post(update, {"role": "reader"}, follow=True)
    assert "carol&#x27;s role was changed" in response.content.decode()
    assert Membership.objects.get(workspace=workspace, user=carol).role == Role.READER


def test_member_update_of_a_non_member_is_404(workspace, charlie, as_alice):
    update = reverse("member_update", args=[workspace.slug, charlie.pk])
    assert as_alice.post(update, {"role": "reader"}).status_code == 404
    assert not Membership.objects.filter(workspace=workspace, user=charlie).exists()


@pytest.mark.parametrize(("who", "status"), [("as_charlie", 404), ("as_carol", 403)])
def test_only_the_owner_adds_members(who, status, request, workspace, charlie):
    url = reverse("workspace_settings", args=[workspace.slug])
    client = request.getfixturevalue(who)
    add = {"username": "charlie", "email": charlie.email, "role": "owner"}
    assert client.post(url, add).status_code == status
    assert not Membership.objects.filter(workspace=workspace, user=charlie).exists()
    assert workspace.memberships.count() == 3


def test_root_never_opens_a_strangers_workspace(workspace, as_charlie):
    response = as_charlie.get("/")
    assert response["Location"] == reverse("home", args=["charlies-own"])


def test_token_list_shows_only_the_callers_tokens(alice, charlie, as_charlie):
    from studio.services import token_create

    token_create(user=alice, name="alice laptop")
    token_create(user=charlie, name="charlie laptop")
    page = as_charlie.get(reverse("token_list")).content.decode()
    assert "charlie laptop" in page and "alice laptop" not in page


@pytest.mark.parametrize("page", ["token_list", "workspace_new"])
def test_pages_outside_a_workspace_keep_the_nav_of_the_one_used_last(page, workspace, as_bob):
    as_bob.get(reverse("home", args=[workspace.slug]))
    html = as_bob.get(reverse(page)).content.decode()
    assert '<label for="workspace-switcher">Workspace</label>' in html
    assert f'<option value="{reverse("home", args=[workspace.slug])}" selected>Vision' in html
    for section in ("home", "run_list", "compute_list", "workspace_settings"):
        assert f'href="{reverse(section, args=[workspace.slug])}"' in html


def test_access_tokens_are_part_of_settings(workspace, as_bob):
    settings_page = as_bob.get(reverse("workspace_settings", args=[workspace.slug])).content
    assert f'href="{reverse("token_list")}"'.encode() in settings_page
    tokens = as_bob.get(reverse("token_list")).content.decode()
    settings_url = reverse("workspace_settings", args=[workspace.slug])
    assert f'<a href="{settings_url}" aria-current="page">Settings</a>' in tokens
    assert tokens.count(f'href="{settings_url}"') == 2 and ">Members of Vision</a>" in tokens


def test_token_page_without_any_workspace_has_no_workspace_nav(db, client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="dave"))
    page = client.get(reverse("token_list")).content.decode()
    assert "Your access tokens" in page and "workspace-switcher" not in page


def _step(page: str, step: str) -> str:
    """The text of one first-steps item on the home page."""
    start = page.index(f'<li id="step-{step}">')
    return page[start : page.index("</li>", start)]


def test_home_walks_a_new_workspace_through_the_core_loop(workspace, alice, as_carol, as_bob):
    from compute.models import ComputeKind, ComputeState, ComputeTarget
    from runs.models import Experiment, Run

    url = reverse("home", args=[workspace.slug])
    slug = workspace.slug
    page = as_carol.get(url).content.decode()
    assert "First steps" in page
    for step in ("compute", "run", "watch"):
        assert "To do" in _step(page, step)
    assert f'href="{reverse("cluster_new", args=[slug])}">Create a compute cluster' in _step(
        page, "compute"
    )
    assert f'href="{reverse("vm_attach", args=[slug])}">attach a virtual machine' in page
    assert f'href="{reverse("run_submit", args=[slug])}">Submit a run' in _step(page, "run")
    # A reader sees the loop but is told how to get the role that takes it.
    page = as_bob.get(url).content.decode()
    assert "First steps" in page and "ask an owner for the Contributor role" in page
    assert ">Create a compute cluster</a>" not in page

    ComputeTarget.objects.create(
        workspace=workspace,
        name="gpu-vm",
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        created_by=alice,
    )
    page = as_carol.get(url).content.decode()
    assert "Done" in _step(page, "compute")
    assert ">Create a compute cluster</a>" not in _step(page, "compute")
    assert "To do" in _step(page, "run")

    exp = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    run = Run.objects.create(
        workspace=workspace,
        experiment=exp,
        number=1,
        status="Running",
        target_name="gpu-vm",
        submitted_by=alice,
    )
    page = as_carol.get(url).content.decode()
    assert "Done" in _step(page, "run") and "To do" in _step(page, "watch")
    run_url = reverse("run_detail", args=[slug, run.pk])
    assert f'href="{run_url}">Watch mnist #1</a>' in _step(page, "watch")

    run.status = "Completed"
    run.save()
    page = as_carol.get(url).content.decode()
    assert "First steps" not in page


def test_home_first_steps_stay_until_a_run_completes(workspace, alice, as_carol):
    from runs.models import Experiment, Run

    exp = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    Run.objects.create(
        workspace=workspace,
        experiment=exp,
        number=1,
        status="Failed",
        target_name="local",
        submitted_by=alice,
    )
    page = as_carol.get(reverse("home", args=[workspace.slug])).content.decode()
    # A failed run on local: two steps still open, the compute one with its actions.
    assert "To do" in _step(page, "compute") and "Done" in _step(page, "run")
    assert "To do" in _step(page, "watch")


LIST_ACTIONS = [
    ("run_list", "No runs yet", "run_submit", "Submit a run"),
    ("experiment_list", "No experiments yet", "run_submit", "Submit a run"),
    (
        "compute_list",
        "Only the built-in <strong>local</strong> target",
        "cluster_new",
        "Create a compute cluster",
    ),
    (
        "environment_list",
        "No environments of this workspace yet",
        "environment_create",
        "New environment",
    ),
    ("sweep_list", "No sweeps yet", "sweep_submit", "Submit one"),
    ("pipeline_list", "No pipelines yet", "pipeline_submit", "Submit one"),
]


@pytest.mark.parametrize(("list_page", "empty", "action", "label"), LIST_ACTIONS)
def test_every_empty_list_offers_the_action_that_fills_it(
    list_page, empty, action, label, workspace, as_carol, as_bob
):
    html_page = as_carol.get(reverse(list_page, args=[workspace.slug])).content.decode()
    empty_at = html_page.index(empty)
    link = f'href="{reverse(action, args=[workspace.slug])}">{label}</a>'
    assert link in html_page[empty_at:]
    reader_page = as_bob.get(reverse(list_page, args=[workspace.slug])).content.decode()
    assert empty in reader_page and link not in reader_page[reader_page.index(empty) :]


def test_filtered_empty_run_list_says_no_match_without_the_action(workspace, as_carol):
    page = as_carol.get(reverse("run_list", args=[workspace.slug]) + "?status=Failed").content
    text = page.decode()
    assert "No runs match these filters." in text
    assert "No runs yet" not in text
