"""Who may see and do what on the attached-VM pages and API endpoints.

alice owns the workspace, carol contributes, bob reads, charlie is a stranger.
No VM is contacted here: writes that would start a check are answered before
their (on-commit) task could run.
"""

import pytest
from django.urls import reverse

from compute.models import ComputeKind, ComputeState, ComputeTarget

SECRET = "hunter2-not-shown"


@pytest.fixture
def vm(workspace, alice):
    return ComputeTarget.objects.create(
        workspace=workspace,
        name="gpu-vm",
        kind=ComputeKind.VM,
        state=ComputeState.SUCCEEDED,
        address="10.0.0.4",
        port=22,
        username="azureuser",
        auth_method="password",
        password=SECRET,
        host_key_fingerprint="SHA256:abc",
        host_key_type="ssh-ed25519",
        facts={"system": "Linux", "os_name": "Ubuntu 22.04.4 LTS", "cpus": 8, "memory_mib": 32000},
        created_by=alice,
    )


def url(name, workspace, *args):
    return reverse(name, args=[workspace.slug, *args])


# ---------------------------------------------------------------- pages


@pytest.mark.parametrize("page", ["vm_attach", "compute_detach"])
def test_write_pages_are_for_contributors(
    page, vm, workspace, as_alice, as_carol, as_bob, as_charlie
):
    args = [] if page == "vm_attach" else ["gpu-vm"]
    assert as_alice.get(url(page, workspace, *args)).status_code == 200
    assert as_carol.get(url(page, workspace, *args)).status_code == 200
    assert as_bob.get(url(page, workspace, *args)).status_code == 403
    assert as_bob.post(url(page, workspace, *args), {}).status_code == 403
    assert as_charlie.get(url(page, workspace, *args)).status_code == 404
    assert as_charlie.post(url(page, workspace, *args), {}).status_code == 404


def test_the_credentials_page_is_for_owners(vm, workspace, as_alice, as_carol, as_bob, as_charlie):
    page = url("compute_credentials", workspace, "gpu-vm")
    assert as_alice.get(page).status_code == 200
    for client in (as_carol, as_bob):
        refused = client.get(page)
        assert refused.status_code == 403
        assert as_carol.post(page, {"username": "u", "password": "pw"}).status_code == 403
    assert "this needs Owner" in as_carol.get(page).content.decode()
    assert as_charlie.get(page).status_code == 404
    assert ComputeTarget.objects.get(name="gpu-vm").password == SECRET


def test_checking_is_for_contributors(vm, workspace, as_carol, as_bob, as_charlie):
    action = url("compute_check", workspace, "gpu-vm")
    assert as_bob.post(action).status_code == 403
    assert as_charlie.post(action).status_code == 404
    assert as_carol.get(action).status_code == 405
    assert as_carol.post(action).status_code == 302


def test_re_trusting_a_host_key_is_for_owners(
    vm, workspace, as_alice, as_carol, as_bob, as_charlie
):
    action = url("compute_retrust", workspace, "gpu-vm")
    body = {"fingerprint": "SHA256:new"}
    assert as_bob.post(action, body).status_code == 403
    assert as_carol.post(action, body).status_code == 403
    assert as_charlie.post(action, body).status_code == 404
    assert as_alice.get(action).status_code == 405
    assert as_alice.post(action, body).status_code == 302


def test_readers_see_the_vm_strangers_do_not(vm, workspace, as_bob, as_charlie):
    page = as_bob.get(url("compute_detail", workspace, "gpu-vm")).content.decode()
    assert "Ubuntu 22.04.4 LTS" in page and "31.2 GiB" in page and "SHA256:abc" in page
    assert SECRET not in page
    assert "Detach" not in page and "Edit credentials" not in page
    assert as_charlie.get(url("compute_detail", workspace, "gpu-vm")).status_code == 404


def test_contributors_are_offered_the_actions(vm, workspace, as_carol):
    page = as_carol.get(url("compute_detail", workspace, "gpu-vm")).content.decode()
    for action in ("Re-check", "Detach"):
        assert action in page
    assert "Edit credentials" not in page
    listing = as_carol.get(url("compute_list", workspace)).content.decode()
    assert "Attach → Virtual machine" in listing


def test_busy_target_refreshes_itself_until_final(vm, workspace, as_bob):
    ComputeTarget.objects.filter(pk=vm.pk).update(state=ComputeState.UPDATING)
    page = as_bob.get(url("compute_detail", workspace, "gpu-vm")).content.decode()
    assert 'hx-trigger="every 2s"' in page
    fragment = as_bob.get(
        url("compute_detail", workspace, "gpu-vm"), headers={"HX-Request": "true"}
    )
    assert b"<html" not in fragment.content and b'id="target-status"' in fragment.content
    listing = as_bob.get(url("compute_list", workspace)).content.decode()
    assert 'hx-trigger="every 2s"' in listing

    ComputeTarget.objects.filter(pk=vm.pk).update(state=ComputeState.SUCCEEDED)
    fragment = as_bob.get(
        url("compute_detail", workspace, "gpu-vm"), headers={"HX-Request": "true"}
    )
    assert b"every 2s" not in fragment.content
    assert b"every 2s" not in as_bob.get(url("compute_list", workspace)).content


# ---------------------------------------------------------------- API


def api(path, workspace):
    return f"/api/v1/computes{path}?workspace={workspace.slug}"


def test_api_reads_for_members_only(vm, workspace, api_bob, api_charlie):
    listing = api_bob.get(api("", workspace))
    assert listing.status_code == 200
    names = {t["name"]: t for t in listing.json()}
    assert set(names) == {"local", "gpu-vm"}
    one = api_bob.get(api("/gpu-vm", workspace)).json()
    assert one["address"] == "10.0.0.4" and one["facts"]["cpus"] == 8
    assert one["host_key_fingerprint"] == "SHA256:abc" and one["auth_method"] == "password"
    assert SECRET not in listing.content.decode() + str(one)
    assert "password" not in one and "private_key" not in one
    assert api_charlie.get(api("", workspace)).status_code == 404
    assert api_charlie.get(api("/gpu-vm", workspace)).status_code == 404


WRITES = [
    (
        "post",
        "/vm",
        {
            "name": "x-vm",
            "address": "10.0.0.5",
            "username": "u",
            "authentication": "password",
            "password": "pw",
        },
    ),
    ("post", "/keypair", None),
    ("post", "/gpu-vm/check", None),
    (
        "put",
        "/gpu-vm/credentials",
        {"username": "u", "authentication": "password", "password": "pw"},
    ),
    ("post", "/gpu-vm/host-key", {"fingerprint": "SHA256:x"}),
    ("delete", "/gpu-vm", None),
]


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_api_writes_need_contributor(method, path, body, vm, workspace, api_bob, api_charlie):
    for client, status in ((api_bob, 403), (api_charlie, 404)):
        response = getattr(client, method)(
            api(path, workspace), data=body, content_type="application/json"
        )
        assert response.status_code == status, response.content
    assert ComputeTarget.objects.filter(name="gpu-vm").exists()
    assert not ComputeTarget.objects.filter(name="x-vm").exists()


def test_api_attach_validation_errors_name_the_field(workspace, api_carol):
    response = api_carol.post(
        api("/vm", workspace),
        {"name": "9x", "address": "tytest@host", "username": "u", "authentication": "password"},
        content_type="application/json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "a letter first" in errors["name"][0]
    assert "Username field" in errors["address"][0]
    assert "password" in errors


def test_api_duplicate_name_is_a_conflict(vm, workspace, api_carol):
    response = api_carol.post(
        api("/vm", workspace),
        {
            "name": "GPU-vm",
            "address": "10.0.0.5",
            "username": "u",
            "authentication": "password",
            "password": "pw",
        },
        content_type="application/json",
    )
    assert response.status_code == 409
    assert "already has a compute target called GPU-vm" in response.json()["detail"]


def test_api_delete_detaches_a_vm_but_not_local(vm, workspace, api_carol):
    assert api_carol.delete(api("/gpu-vm", workspace)).status_code == 204
    assert not ComputeTarget.objects.filter(name="gpu-vm").exists()
    response = api_carol.delete(api("/local", workspace))
    assert response.status_code == 409
    assert "built-in local target" in response.json()["detail"]


def test_only_owners_are_offered_credentials_and_a_changed_host_key(
    vm, workspace, as_alice, as_carol
):
    ComputeTarget.objects.filter(pk=vm.pk).update(
        config={"offered_host_key": {"fingerprint": "SHA256:new", "type": "ssh-ed25519"}}
    )
    detail = url("compute_detail", workspace, "gpu-vm")
    owner = as_alice.get(detail).content.decode()
    assert "Edit credentials" in owner and "Re-trust host key SHA256:new" in owner
    contributor = as_carol.get(detail).content.decode()
    assert "Edit credentials" not in contributor
    assert "Re-trust host key" not in contributor
    assert "Only a workspace owner can trust the new key" in contributor


OWNER_WRITES = [
    (
        "put",
        "/gpu-vm/credentials",
        {"username": "u", "authentication": "password", "password": "pw"},
    ),
    ("post", "/gpu-vm/host-key", {"fingerprint": "SHA256:x"}),
]


@pytest.mark.parametrize(("method", "path", "body"), OWNER_WRITES)
def test_api_credentials_and_host_key_need_owner(
    method, path, body, vm, workspace, api_alice, api_carol
):
    refused = getattr(api_carol, method)(
        api(path, workspace), data=body, content_type="application/json"
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Your role in Vision is Contributor; this needs Owner."
    assert ComputeTarget.objects.get(name="gpu-vm").password == SECRET
    allowed = getattr(api_alice, method)(
        api(path, workspace), data=body, content_type="application/json"
    )
    assert allowed.status_code in (202, 409), allowed.content
