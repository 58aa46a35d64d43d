"""/api/v1/computes for machines attached over SSH: attach, re-check, credentials, host key.

Listing, reading and deleting every kind of target is compute.targets.api.
"""

from datetime import datetime

from ninja import Router, Schema, Status
from ninja.errors import HttpError

from compute import selectors, ssh
from compute.models import ComputeTarget
from compute.names import NAME_TAKEN
from compute.schemas import AttachedOut, attached_out
from compute.vm import services
from compute.vm.forms import (
    Authentication,
    HdInsightAttachForm,
    SparkMasterForm,
    VmAttachForm,
    VmCredentialsForm,
    authorized_keys_command,
    generated_key_seal,
)
from studio.api_auth import FormErrorOut, api_membership, form_errors
from studio.models import Role

router: Router = Router(tags=["compute"])


class VmOut(AttachedOut):
    name: str
    kind: str
    state: str
    error: str
    warnings: list[str]
    created_at: datetime


def vm_out(target: ComputeTarget) -> VmOut:
    target.refresh_from_db()
    return VmOut(
        name=target.name,
        kind=target.kind,
        state=target.state,
        error=target.error,
        warnings=target.warnings or [],
        created_at=target.created_at,
        **attached_out(target),
    )


class CredentialsIn(Schema):
    username: str
    authentication: str = Authentication.KEY
    private_key: str = ""
    passphrase: str = ""
    password: str = ""
    generated_key: str = ""


class VmIn(CredentialsIn):
    name: str
    address: str
    reachable_address: str = ""
    port: int = 22


class KeyPairOut(Schema):
    public_key: str
    authorized_keys_command: str
    generated_key: str


class HostKeyIn(Schema):
    fingerprint: str


def _vm(membership, name: str) -> ComputeTarget:
    try:
        target = selectors.compute_get(workspace=membership.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise HttpError(404, f"No compute target called {name} in this workspace.") from exc
    if not target.is_ssh:
        raise HttpError(
            409, f"{name} is a {target.get_kind_display()}, not a machine attached over SSH."
        )
    return target


@router.post("/computes/keypair", response=KeyPairOut)
def keypair_generate(request, workspace: str | None = None):
    """A new ed25519 key pair: add `public_key` to the VM, then attach with
    `authentication: "generate"` and this `generated_key` (the private key, encrypted)."""
    api_membership(request, workspace, Role.CONTRIBUTOR)
    private_key, _ = ssh.generate_key_pair()
    public_key = services.public_key_line(private_key)
    return KeyPairOut(
        public_key=public_key,
        authorized_keys_command=authorized_keys_command(public_key),
        generated_key=generated_key_seal(private_key),
    )


@router.post("/computes/vm", response={202: VmOut, 400: FormErrorOut, 409: FormErrorOut})
def vm_attach(request, payload: VmIn, workspace: str | None = None):
    """Attach a VM over SSH; it is checked in the background (state Creating, then
    Succeeded or Failed with the failed step in `operation`)."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    form = VmAttachForm(data=payload.dict(), workspace=membership.workspace)
    if form.is_valid():
        data = form.cleaned_data
        form.attach(user=request.user)
        target = selectors.compute_get(workspace=membership.workspace, name=data["name"])
        return Status(202, vm_out(target))
    status = 409 if form.has_error("name", NAME_TAKEN) else 400
    return Status(status, form_errors(form))


@router.post("/computes/{name}/check", response={202: VmOut})
def compute_check(request, name: str, workspace: str | None = None):
    """Log in again and refresh the facts (over the pooled connection when there is one)."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _vm(membership, name)
    services.compute_check(target=target, user=request.user)
    return Status(202, vm_out(target))


@router.put("/computes/{name}/credentials", response={202: VmOut, 400: FormErrorOut})
def compute_credentials_update(
    request, name: str, payload: CredentialsIn, workspace: str | None = None
):
    """Replace the user name and password or key, then check the VM with them (Owner)."""
    membership = api_membership(request, workspace, Role.OWNER)
    target = _vm(membership, name)
    form = VmCredentialsForm(data=payload.dict())
    if form.is_valid():
        form.update(target=target, user=request.user)
        return Status(202, vm_out(target))
    return Status(400, form_errors(form))


@router.post("/computes/{name}/host-key", response={202: VmOut})
def host_key_retrust(request, name: str, payload: HostKeyIn, workspace: str | None = None):
    """Trust the host key the VM now offers (`offered_host_key.fingerprint`), after
    comparing it on the VM with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` (Owner)."""
    membership = api_membership(request, workspace, Role.OWNER)
    target = _vm(membership, name)
    services.host_key_retrust(target=target, user=request.user, fingerprint=payload.fingerprint)
    return Status(202, vm_out(target))


class HdInsightIn(CredentialsIn):
    name: str
    address: str
    port: int = 22
    spark_master: str = ""


class SparkMasterIn(Schema):
    spark_master: str = ""


@router.post("/computes/hdinsight", response={202: VmOut, 400: FormErrorOut, 409: FormErrorOut})
def hdinsight_attach(request, payload: HdInsightIn, workspace: str | None = None):
    """Attach an HDInsight cluster (`<cluster>-ssh.azurehdinsight.net`) or any Spark head
    node over SSH; the background check also finds spark-submit, the Spark and Python
    versions and the master. An empty `spark_master` means what the cluster uses."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    form = HdInsightAttachForm(data=payload.dict(), workspace=membership.workspace)
    if form.is_valid():
        data = form.cleaned_data
        form.attach(user=request.user)
        target = selectors.compute_get(workspace=membership.workspace, name=data["name"])
        return Status(202, vm_out(target))
    status = 409 if form.has_error("name", NAME_TAKEN) else 400
    return Status(status, form_errors(form))


@router.put("/computes/{name}/spark", response={200: VmOut, 400: FormErrorOut})
def spark_master_update(request, name: str, payload: SparkMasterIn, workspace: str | None = None):
    """Set the master PySpark runs on an HDInsight / Spark target submit to
    (yarn, local[N], spark://HOST:7077; empty for what the cluster uses)."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _vm(membership, name)
    form = SparkMasterForm(data=payload.dict())
    if form.is_valid():
        form.update(target=target)
        return Status(200, vm_out(target))
    return Status(400, form_errors(form))
