"""The attach wizards of the cloud services: Azure Databricks, Data Lake Analytics, Azure Batch.

Each asks for what the service's own portal shows, plus the one secret the
client needs (a token, a client secret or an account key), which is stored
encrypted and never rendered back into a page.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

from django import forms
from django.utils.safestring import mark_safe

from compute.cloud import services as cloud_services
from compute.cloud.clients.datalake import RETIREMENT_NOTICE
from compute.models import ComputeOperation
from compute.names import ComputeNameMixin, compute_name_field
from studio.outbound import OutboundRefused, outbound_policy
from studio.secrets import SecretInput

RESOURCE_GROUP_RE = re.compile(r"[-\w._()]{1,90}")
DATABRICKS_CLUSTER_RE = re.compile(r"[0-9]{4}-[0-9]{6}-[a-z0-9]+")
BATCH_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}")
BATCH_POOL_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
DATALAKE_ACCOUNT_RE = re.compile(r"[a-z0-9]{3,24}")
TOKEN_HELP = mark_safe(  # noqa: S308 - constant text of our own  # nosec B308
    "In the Databricks workspace open <strong>User Settings → Developer → Access tokens</strong> "
    "and press <strong>Generate new token</strong> (give it a comment such as “trainyard” and a "
    "lifetime). Paste the token (it starts with <code>dapi</code>) here: it is stored encrypted "
    "and never shown again. Runs act as the token's user."
)


def _url(value: str, example: str) -> str:
    value = value.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise forms.ValidationError(f"Enter the full URL with https://, e.g. {example}.")
    if parts.query or parts.fragment:
        raise forms.ValidationError(
            f"Enter only the address, without ?… or #… (e.g. {example}): copy it from the "
            "address bar up to the host name."
        )
    try:
        outbound_policy().check_host(parts.hostname or "")
    except OutboundRefused as exc:
        raise forms.ValidationError(exc.message) from None
    return value


class CloudAttachForm(ComputeNameMixin, forms.Form):
    """The fields every cloud wizard starts with."""

    name = compute_name_field("Pipeline steps name it as their compute target.")
    resource_group = forms.CharField(
        label="Resource group",
        max_length=90,
        help_text="The Azure resource group the service belongs to, as the portal shows it on "
        "its Overview page (e.g. ml-rg). Shown on the target's page for reference.",
    )

    # The service attaching what the form describes, whose parameters are the form's fields.
    attach_service: Callable[..., ComputeOperation]

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def attach(self, *, user) -> ComputeOperation:
        """Attach what the form describes (the form is valid); page and API both call this."""
        return type(self).attach_service(workspace=self.workspace, user=user, **self.cleaned_data)

    def clean_resource_group(self):
        group = self.cleaned_data["resource_group"].strip()
        if not RESOURCE_GROUP_RE.fullmatch(group) or group.endswith("."):
            raise forms.ValidationError(
                "A resource group name has up to 90 letters, digits, underscores, hyphens, "
                "periods and parentheses, and does not end with a period."
            )
        return group


class DatabricksSecretForm(forms.Form):
    access_token = forms.CharField(
        label="Access token",
        strip=True,
        widget=SecretInput(attrs={"autocomplete": "off"}),
        help_text=TOKEN_HELP,
    )

    def clean_access_token(self):
        token = self.cleaned_data["access_token"]
        if any(c.isspace() for c in token):
            raise forms.ValidationError(
                "A token has no spaces: copy it again with the Copy button beside it."
            )
        return token


class DatabricksAttachForm(CloudAttachForm, DatabricksSecretForm):
    """Compute → Attach → Azure Databricks."""

    attach_service = cloud_services.databricks_attach

    workspace_url = forms.CharField(
        label="Databricks workspace URL",
        max_length=255,
        help_text="The address of the workspace in your browser, e.g. "
        "https://adb-1234567890123456.7.azuredatabricks.net.",
    )
    cluster_id = forms.CharField(
        label="Default cluster ID (optional)",
        max_length=64,
        required=False,
        help_text="An existing cluster that steps run on unless they ask for another one or "
        "for a new job cluster: Compute → the cluster → More → View JSON shows its "
        "cluster_id, e.g. 0923-164208-meows279. Leave empty to choose per step.",
    )

    field_order = ["name", "workspace_url", "resource_group", "access_token", "cluster_id"]

    def clean_workspace_url(self):
        return _url(
            self.cleaned_data["workspace_url"], "https://adb-1234567890123456.7.azuredatabricks.net"
        )

    def clean_cluster_id(self):
        cluster_id = self.cleaned_data["cluster_id"].strip()
        if cluster_id and not DATABRICKS_CLUSTER_RE.fullmatch(cluster_id):
            raise forms.ValidationError(
                "A cluster ID looks like 0923-164208-meows279 (not the cluster's name): copy it "
                "from the cluster's JSON view."
            )
        return cluster_id


class DataLakeSecretForm(forms.Form):
    client_secret = forms.CharField(
        label="Client secret",
        widget=SecretInput(attrs={"autocomplete": "off"}),
        help_text="A secret of the application (App registrations → the app → Certificates & "
        "secrets → New client secret): copy its Value, not its ID. Stored encrypted and never "
        "shown again.",
    )


class DataLakeAttachForm(CloudAttachForm, DataLakeSecretForm):
    """Compute → Attach → Data Lake Analytics (retired by Microsoft, kept for existing accounts)."""

    attach_service = cloud_services.datalake_attach

    notice = RETIREMENT_NOTICE
    account_name = forms.CharField(
        label="Data Lake Analytics account name",
        max_length=24,
        help_text="The account's name as the portal lists it, e.g. contosoadla "
        "(3–24 lowercase letters and digits).",
    )
    tenant_id = forms.CharField(
        label="Tenant ID",
        max_length=64,
        help_text="The Directory (tenant) ID on the Overview page of the app registration "
        "Trainyard signs in as.",
    )
    client_id = forms.CharField(
        label="Client ID",
        max_length=64,
        help_text="The Application (client) ID of that app registration. Give the app the Data "
        "Lake Analytics Developer role on the account.",
    )
    endpoint = forms.CharField(
        label="Job endpoint (advanced)",
        max_length=255,
        required=False,
        help_text="Leave empty for https://&lt;account&gt;.azuredatalakeanalytics.net; only a "
        "sovereign cloud or a proxy needs another address.",
    )
    authority_url = forms.CharField(
        label="Azure AD authority (advanced)",
        max_length=255,
        required=False,
        help_text="Leave empty for https://login.microsoftonline.com.",
    )

    field_order = [
        "name",
        "resource_group",
        "account_name",
        "tenant_id",
        "client_id",
        "client_secret",
        "endpoint",
        "authority_url",
    ]

    def clean_account_name(self):
        name = self.cleaned_data["account_name"].strip()
        if not DATALAKE_ACCOUNT_RE.fullmatch(name):
            raise forms.ValidationError(
                "An account name has 3–24 lowercase letters and digits: enter only the name, "
                "not the URL."
            )
        return name

    def _guid(self, field: str, what: str) -> str:
        value = self.cleaned_data[field].strip()
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise forms.ValidationError(
                f"The {what} is a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47: copy it from "
                "the app registration's Overview page."
            ) from None

    def clean_tenant_id(self):
        return self._guid("tenant_id", "tenant ID")

    def clean_client_id(self):
        return self._guid("client_id", "client ID")

    def clean_endpoint(self):
        value = self.cleaned_data["endpoint"].strip()
        return _url(value, "https://contosoadla.azuredatalakeanalytics.net") if value else ""

    def clean_authority_url(self):
        value = self.cleaned_data["authority_url"].strip()
        return _url(value, "https://login.microsoftonline.com") if value else ""


class BatchSecretForm(forms.Form):
    account_key = forms.CharField(
        label="Account key",
        strip=True,
        widget=SecretInput(attrs={"autocomplete": "off"}),
        help_text="The Batch account's Keys page in the portal shows a primary and a secondary "
        "access key: paste either. Stored encrypted and never shown again.",
    )

    def clean_account_key(self):
        key = self.cleaned_data["account_key"]
        try:
            base64.b64decode(key, validate=True)
        except ValueError:
            raise forms.ValidationError(
                "This is not an account key (those are base64 text ending in ==): copy the "
                "Primary access key from the account's Keys page, not its URL or name."
            ) from None
        return key


class BatchAttachForm(CloudAttachForm, BatchSecretForm):
    """Compute → Attach → Azure Batch."""

    attach_service = cloud_services.batch_attach

    account_name = forms.CharField(
        label="Batch account name",
        max_length=24,
        help_text="As the portal lists it, e.g. contosobatch (3–24 lowercase letters and digits).",
    )
    account_url = forms.CharField(
        label="Batch account URL",
        max_length=255,
        help_text="The account endpoint on its Overview page, e.g. "
        "https://contosobatch.westeurope.batch.azure.com.",
    )
    pool_id = forms.CharField(
        label="Default pool",
        max_length=64,
        help_text="The pool whose nodes run the steps' command lines unless a step names another "
        "one (Batch account → Pools), e.g. cpu-pool. Trainyard does not create pools.",
    )

    field_order = [
        "name",
        "account_name",
        "account_url",
        "resource_group",
        "account_key",
        "pool_id",
    ]

    def clean_account_name(self):
        name = self.cleaned_data["account_name"].strip()
        if not BATCH_ACCOUNT_RE.fullmatch(name):
            raise forms.ValidationError(
                "A Batch account name has 3–24 lowercase letters and digits: enter only the "
                "name, the URL has its own field."
            )
        return name

    def clean_account_url(self):
        return _url(
            self.cleaned_data["account_url"], "https://contosobatch.westeurope.batch.azure.com"
        )

    def clean_pool_id(self):
        pool = self.cleaned_data["pool_id"].strip()
        if not BATCH_POOL_RE.fullmatch(pool):
            raise forms.ValidationError(
                "A pool ID has up to 64 letters, digits, hyphens and underscores, e.g. cpu-pool."
            )
        return pool


# The credentials form of each cloud kind: the one secret, replaced and checked again.
SECRET_FORMS = {
    "databricks": (DatabricksSecretForm, "access_token"),
    "datalakeanalytics": (DataLakeSecretForm, "client_secret"),
    "batch": (BatchSecretForm, "account_key"),
}
