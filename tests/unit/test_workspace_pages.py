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


def test_user_without_workspace_is_offered_to_create_one(db, client):
    from tests.factories import PASSWORD, UserFactory

    UserFactory(username="dave")
    client.login(username="dave", password=PASSWORD)
    response = client.get("/", follow=True)
    assert b"New workspace" in response.content
    response = client.post(reverse("workspace_new"), {"name": "Dave's lab"}, follow=True)
    assert b"Dave&#x27;s lab" in response.content
    assert Membership.objects.get(user__username="dave").role == Role.OWNER


def test_home_shows_empty_states_with_calls_to_action(workspace, as_alice, as_bob):
    page = as_alice.get(reverse("home", args=[workspace.slug])).content.decode()
    assert "No runs yet" in page
    assert "Create an experiment" in page
    assert "Add compute" in page
    # A reader is not offered actions they may not take.
    page = as_bob.get(reverse("home", args=[workspace.slug])).content.decode()
    assert "No runs yet" in page and "Add compute" not in page


def test_home_lists_recent_runs_and_compute(workspace, alice, as_bob):
    from runs.models import Experiment, Run

    exp = Experiment.objects.create(workspace=workspace, name="mnist", created_by=alice)
    Run.objects.create(
        workspace=workspace,
        experiment=exp,
        number=1,
        status="Running",
        target_name="local",
        submitted_by=alice,
    )
    page = as_bob.get(reverse("home", args=[workspace.slug])).content.decode()
    assert "mnist #1" in page and "Running" in page and ">local<" in page


def test_nav_has_the_studio_sections_and_switcher(workspace, as_alice):
    page = as_alice.get(reverse("home", args=[workspace.slug])).content.decode()
    for label in ("Home", "Experiments", "Runs", "Compute", "Environments", "Settings"):
        assert f">{label}</a>" in page
    assert '<label for="workspace-switcher">Workspace</label>' in page


def test_owner_manages_members_reader_cannot(workspace, alice, bob, charlie, as_alice, as_bob):
    url = reverse("workspace_settings", args=[workspace.slug])
    assert as_bob.post(url, {"username": "charlie", "role": "reader"}).status_code == 403
    as_alice.post(url, {"username": "charlie", "role": "contributor"})
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


def test_unknown_user_gets_a_clear_message(workspace, as_alice):
    url = reverse("workspace_settings", args=[workspace.slug])
    response = as_alice.post(url, {"username": "nobody", "role": "reader"})
    assert "No user called “nobody”" in response.content.decode()


def test_admin_is_for_staff_only(workspace, alice, as_alice):
    assert as_alice.get("/admin/").status_code == 302
    alice.is_staff = alice.is_superuser = True
    alice.save()
    for url in (
        "/admin/studio/workspace/",
        "/admin/compute/computetarget/",
        "/admin/runs/run/",
        "/admin/studio/apitoken/",
    ):
        assert as_alice.get(url).status_code == 200
