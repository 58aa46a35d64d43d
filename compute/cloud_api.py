"""/api/v1/computes for Azure Databricks, Data Lake Analytics and Azure Batch targets.

Attach (checked in the background like a VM), re-check and replace the secret.
Responses carry the target's settings and facts, never its token, client
secret or account key. Batch nodes download a step's files from
/api/v1/batch-files/{link} without signing in: the signed link is their key.
"""

from datetime import datetime

from django.core.exceptions import ValidationError
from django.http import FileResponse
from ninja import Router, Schema, Status
from ninja.errors import HttpError

from compute import cloud_services, selectors
from compute.api import OperationOut, operation_out
from compute.backends.batch import linked_file
from compute.cloud_forms import (
    SECRET_FORMS,
    BatchAttachForm,
    DatabricksAttachForm,
    DataLakeAttachForm,
)
from compute.models import ComputeTarget
from compute.names import NAME_TAKEN
from compute.services import ComputeError
from studio.api import FormErrorOut, api_membership, form_errors
from studio.blobs import blob_path
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


def _attach(request, workspace, payload, form_class, attach):
    membership = api_membership(request, workspace, Role.CONTRIBUTOR)
    form = form_class(data=payload.dict(), workspace=membership.workspace)
    if form.is_valid():
        try:
            attach(workspace=membership.workspace, user=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
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
    return _attach(
        request, workspace, payload, DatabricksAttachForm, cloud_services.databricks_attach
    )


@router.post("/computes/datalake", response={202: CloudOut, 400: FormErrorOut, 409: FormErrorOut})
def datalake_attach(request, payload: DataLakeIn, workspace: str | None = None):
    """Attach an Azure Data Lake Analytics account as an Azure AD application. Microsoft
    retired the service on 2024-02-29; it is kept for existing accounts."""
    return _attach(request, workspace, payload, DataLakeAttachForm, cloud_services.datalake_attach)


@router.post("/computes/batch", response={202: CloudOut, 400: FormErrorOut, 409: FormErrorOut})
def batch_attach(request, payload: BatchIn, workspace: str | None = None):
    """Attach an Azure Batch account with its shared key and a default pool."""
    return _attach(request, workspace, payload, BatchAttachForm, cloud_services.batch_attach)


def _cloud_target(membership, name: str) -> ComputeTarget:
    try:
        target = selectors.compute_get(workspace=membership.workspace, name=name)
    except ComputeTarget.DoesNotExist as exc:
        raise HttpError(404, f"No compute target called {name} in this workspace.") from exc
    if target.kind not in cloud_services.CLOUD_KINDS:
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
    try:
        cloud_services.cloud_check(target=target, user=request.user)
    except ComputeError as exc:
        raise HttpError(409, str(exc)) from exc
    return Status(202, cloud_out(target))


@router.put("/computes/{name}/cloud-credentials", response={202: CloudOut, 400: FormErrorOut})
def cloud_credentials_update(request, name: str, payload: SecretIn, workspace: str | None = None):
    """Replace the stored secret and check the target with it (Owner)."""
    membership = api_membership(request, workspace, Role.OWNER)
    target = _cloud_target(membership, name)
    form_class, field = SECRET_FORMS[target.kind]
    form = form_class(data=payload.dict())
    if form.is_valid():
        try:
            cloud_services.cloud_credentials_update(
                target=target, user=request.user, secret=form.cleaned_data[field]
            )
        except ComputeError as exc:
            raise HttpError(409, str(exc)) from exc
        return Status(202, cloud_out(target))
    return Status(400, form_errors(form))


@router.get("/batch-files/{link}", auth=None, url_name="batch_file", include_in_schema=False)
def batch_file(request, link: str):
    """A run's file, for the Batch node whose task was given this link."""
    sha = linked_file(link)
    if sha is None:
        raise HttpError(
            403,
            "This link to a run's file has expired or was not made by Trainyard: submit the "
            "step again (links last BATCH_FILE_LINK_HOURS).",
        )
    try:
        return FileResponse(blob_path(sha).open("rb"))
    except FileNotFoundError:
        raise HttpError(404, "The file is no longer stored: submit the step again.") from None
