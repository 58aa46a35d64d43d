"""/api/v1/computes for Azure Databricks, Data Lake Analytics and Azure Batch targets.

Attach (checked in the background like a VM), re-check and replace the secret.
Responses carry the target's settings and facts, never its token, client
secret or account key.
"""

from datetime import datetime

from ninja import Router, Schema, Status
from ninja.errors import HttpError

from compute import selectors
from compute.cloud import services as cloud_services
from compute.cloud.forms import (
    SECRET_FORMS,
    BatchAttachForm,
    DatabricksAttachForm,
    DataLakeAttachForm,
)
from compute.models import CLOUD_KINDS, ComputeTarget
from compute.names import NAME_TAKEN
from compute.schemas import OperationOut, operation_out
from studio.api_auth import FormErrorOut, api_membership, form_errors
from studio.models import Role

router: Router = Router(tags=["compute"])


class CloudOut(Schema):
    name: str
    kind: str
    state: str
    error: str
    warnings: list[str]
    settings: dict
    facts: dict
    checked_at: datetime | None
    created_at: datetime
    created_by: str | None
    operation: OperationOut | None


class DatabricksIn(Schema):
    name: str
    workspace_url: str
    resource_group: str
    access_token: str
    cluster_id: str = ""


class DataLakeIn(Schema):
    name: str
    resource_group: str
    account_name: str
    tenant_id: str
    client_id: str
    client_secret: str
    endpoint: str = ""
    authority_url: str = ""


class BatchIn(Schema):
    name: str
    account_name: str
    account_url: str
    resource_group: str
    account_key: str
    pool_id: str


class SecretIn(Schema):
    """The new secret: `access_token` (Databricks), `client_secret` (Data Lake) or
    `account_key` (Batch)."""

    access_token: str = ""
    client_secret: str = ""
    account_key: str = ""


def cloud_settings(target: ComputeTarget) -> dict:
    """The target's non-secret settings (workspace URL, account, pool, resource group...)."""
    return dict(target.config)


def cloud_out(target: ComputeTarget) -> CloudOut:
    target.refresh_from_db()
    operation = selectors.operation_latest(target=target)
    return CloudOut(
        name=target.name,
        kind=target.kind,
        state=target.state,
        error=target.error,
        warnings=[w for w in target.warnings or [] if w],
        settings=cloud_settings(target),
        facts=target.facts,
        checked_at=target.checked_at,
        created_at=target.created_at,
        created_by=target.created_by.username if target.created_by else None,
        operation=operation_out(operation) if operation else None,
    )


def _attach(request, workspace, payload, form_class):
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    form = form_class(data=payload.dict(), workspace=membership.workspace)
    if form.is_valid():
        form.attach(user=request.user)
        target = selectors.compute_get(
            workspace=membership.workspace, name=form.cleaned_data["name"]
        )
        return Status(202, cloud_out(target))
    status = 409 if form.has_error("name", NAME_TAKEN) else 400
    return Status(status, form_errors(form))


@router.post("/computes/databricks", response={202: CloudOut, 400: FormErrorOut, 409: FormErrorOut})
def databricks_attach(request, payload: DatabricksIn, workspace: str | None = None):
    """Attach an Azure Databricks workspace with a personal access token; the token is
    checked in the background (state Creating, then Succeeded with the clusters in `facts`,
    or Failed with the failed step in `operation`)."""
    return _attach(request, workspace, payload, DatabricksAttachForm)


@router.post("/computes/datalake", response={202: CloudOut, 400: FormErrorOut, 409: FormErrorOut})
def datalake_attach(request, payload: DataLakeIn, workspace: str | None = None):
    """Attach an Azure Data Lake Analytics account as an Azure AD application. Microsoft
    retired the service on 2024-02-29; it is kept for existing accounts."""
    return _attach(request, workspace, payload, DataLakeAttachForm)


@router.post("/computes/batch", response={202: CloudOut, 400: FormErrorOut, 409: FormErrorOut})
def batch_attach(request, payload: BatchIn, workspace: str | None = None):
    """Attach an Azure Batch account with its shared key and a default pool."""
    return _attach(request, workspace, payload, BatchAttachForm)


def _cloud_target(membership, name: str) -> ComputeTarget:
    try:
        target = selectors.compute_get(workspace=membership.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise HttpError(404, f"No compute target called {name} in this workspace.") from exc
    if target.kind not in CLOUD_KINDS:
        raise HttpError(
            409,
            f"{name} is a {target.get_kind_display()}, not a Databricks, Data Lake or Batch "
            "target.",
        )
    return target


@router.post("/computes/{name}/cloud-check", response={202: CloudOut})
def cloud_check(request, name: str, workspace: str | None = None):
    """Sign in again and refresh the clusters, pools or recent jobs."""
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    target = _cloud_target(membership, name)
    cloud_services.cloud_check(target=target, user=request.user)
    return Status(202, cloud_out(target))


@router.put("/computes/{name}/cloud-credentials", response={202: CloudOut, 400: FormErrorOut})
def cloud_credentials_update(request, name: str, payload: SecretIn, workspace: str | None = None):
    """Replace the stored secret and check the target with it (Owner)."""
    membership = api_membership(request, workspace, Role.OWNER)
    target = _cloud_target(membership, name)
    form_class, field = SECRET_FORMS[target.kind]
    form = form_class(data=payload.dict())
    if form.is_valid():
        cloud_services.cloud_credentials_update(
            target=target, user=request.user, secret=form.cleaned_data[field]
        )
        return Status(202, cloud_out(target))
    return Status(400, form_errors(form))
