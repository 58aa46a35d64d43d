"""The attach wizards for machines reached over SSH (VM, HDInsight / Spark head node)
and the credentials form they share."""

from __future__ import annotations

import ipaddress
import re

from cryptography.fernet import InvalidToken
from django import forms
from django.utils.html import format_html

from compute import ssh
from compute.models import AuthMethod, ComputeOperation, ComputeTarget
from compute.names import ComputeNameMixin, compute_name_field
from compute.vm import services, spark
from studio.outbound import OutboundRefused, outbound_policy
from studio.secrets import SecretInput, fernet

RESOURCE_ID_RE = re.compile(
    r"/subscriptions/(?P<subscription>[^/\s]+)/resourceGroups/(?P<group>[^/\s]+)"
    r"/providers/Microsoft\.Compute/virtualMachines/(?P<vm>[^/\s]+)/?",
    re.IGNORECASE,
)
HOST_NAME_RE = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
LINUX_USER_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}", re.IGNORECASE)
MAX_KEY_FILE_BYTES = 64 * 1024
# A generated key waits (encrypted, in the page) while the user adds its public key to the VM.
GENERATED_KEY_MAX_AGE = 24 * 3600
KEYGEN_COMMAND = "ssh-keygen -t ed25519 -f ~/.ssh/trainyard -C trainyard"


class Authentication:
    KEY = "key"
    PASSWORD = "password"  # noqa: S105 - the name of a choice, not a secret  # nosec B105
    GENERATE = "generate"
    CHOICES = [
        (KEY, "SSH key (recommended)"),
        (PASSWORD, "Password"),
        (GENERATE, "Generate a key pair here"),
    ]


class SecretTextarea(forms.Textarea):
    """A textarea that never renders a submitted private key back into the page."""

    def format_value(self, value):
        return None


def generated_key_seal(private_key: str) -> str:
    return fernet().encrypt(private_key.encode()).decode()


def generated_key_open(token: str, machine: str = "VM") -> str:
    try:
        return fernet().decrypt(token.encode(), ttl=GENERATED_KEY_MAX_AGE).decode()
    except InvalidToken:
        raise forms.ValidationError(
            "The generated key pair has expired or was not made here: generate a new one "
            f"and add its public key to the {machine}."
        ) from None


def authorized_keys_command(public_key: str) -> str:
    """What to run on the VM, as the user Trainyard logs in as, to authorise `public_key`."""
    return (
        "mkdir -p ~/.ssh && chmod 700 ~/.ssh && "
        f"echo '{public_key}' >> ~/.ssh/authorized_keys && chmod 600 ~/.ssh/authorized_keys"
    )


class VmCredentialsForm(forms.Form):
    """How Trainyard logs in to a VM: user name and an SSH key, a password or a generated key."""

    username = forms.CharField(
        label="Username",
        max_length=32,
        help_text="The Linux user Trainyard logs in as and runs jobs as, e.g. azureuser.",
    )
    authentication = forms.ChoiceField(
        label="Authentication",
        choices=Authentication.CHOICES,
        initial=Authentication.KEY,
        widget=forms.RadioSelect,
        help_text=(
            "SSH keys are recommended: they cannot be guessed the way passwords can, "
            "Trainyard never learns a password you use elsewhere, and you can revoke the key "
            "alone by removing its line from ~/.ssh/authorized_keys on the VM."
        ),
    )
    private_key = forms.CharField(
        label="Private key",
        required=False,
        strip=False,
        widget=SecretTextarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text=format_html(
            "Paste the private key file (OpenSSH, PEM RSA/ECDSA or ed25519), or upload it below. "
            "No key yet? On your computer run <code>{}</code>, then "
            "<code>ssh-copy-id -i ~/.ssh/trainyard.pub USER@ADDRESS</code>, and paste "
            "<code>~/.ssh/trainyard</code> here. It is stored encrypted and never shown again.",
            KEYGEN_COMMAND,
        ),
    )
    private_key_file = forms.FileField(
        label="Or upload the private key file",
        required=False,
        help_text="For example ~/.ssh/id_ed25519 (not the .pub file).",
    )
    passphrase = forms.CharField(
        label="Key passphrase",
        required=False,
        strip=False,
        widget=SecretInput(attrs={"autocomplete": "off"}),
        help_text="Only if the key is protected by one. Stored encrypted.",
    )
    password = forms.CharField(
        label="Password",
        required=False,
        strip=False,
        widget=SecretInput(attrs={"autocomplete": "new-password"}),
        help_text="The user's password on the VM. Stored encrypted and never shown again.",
    )
    generated_key = forms.CharField(required=False, widget=forms.HiddenInput)

    # What the texts call the machine Trainyard logs in to.
    machine = "VM"

    def __init__(self, *args, machine: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.machine = machine or self.machine
        for name in ("authentication", "password"):
            field = self.fields[name]
            field.help_text = field.help_text.replace("the VM", f"the {self.machine}")

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        if "@" in username:
            raise forms.ValidationError(
                "Enter only the user name here (the part before @); the host goes in Address."
            )
        if not LINUX_USER_RE.fullmatch(username):
            raise forms.ValidationError(
                "Use a Linux user name: letters, digits, _, . or -, starting with a letter or _."
            )
        return username

    def clean_private_key_file(self):
        upload = self.cleaned_data.get("private_key_file")
        if not upload:
            return ""
        if upload.size > MAX_KEY_FILE_BYTES:
            raise forms.ValidationError(
                "This file is too large to be a private key: choose the key file itself, "
                "e.g. ~/.ssh/id_ed25519."
            )
        try:
            return upload.read().decode()
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "This file is not a text key file: choose the private key, e.g. ~/.ssh/id_ed25519 "
                "(a PuTTY .ppk must be exported in OpenSSH format first)."
            ) from None

    def clean(self):
        super().clean()
        data = self.cleaned_data
        method = data.get("authentication")
        credentials = {
            "auth_method": AuthMethod.KEY,
            "password": "",  # empty: a key instead  # nosec B105
            "private_key": "",
            "passphrase": "",  # empty: a password instead  # nosec B105
            "public_key": "",
        }
        if method == Authentication.PASSWORD:
            if not data.get("password"):
                self.add_error(
                    "password", f"Enter the password of this user on the {self.machine}."
                )
            credentials.update(auth_method=AuthMethod.PASSWORD, password=data.get("password", ""))
        elif method == Authentication.KEY:
            text = data.get("private_key_file") or data.get("private_key") or ""
            passphrase = data.get("passphrase", "")
            if not text.strip():
                self.add_error(
                    "private_key",
                    "Paste the private key or upload its file, or choose “Generate a key pair "
                    "here” if you do not have one.",
                )
            else:
                try:
                    ssh.parse_private_key(text, passphrase or None)
                except ssh.SshError as exc:
                    field = "passphrase" if exc.code == "bad_passphrase" else "private_key"
                    self.add_error(field, exc.message)
            credentials.update(private_key=text, passphrase=passphrase)
        elif method == Authentication.GENERATE:
            token = data.get("generated_key")
            if not token:
                self.add_error(
                    "authentication",
                    f"Press “Generate key pair”, add the public key to the {self.machine}, "
                    "then attach.",
                )
            else:
                try:
                    private_key = generated_key_open(token, self.machine)
                except forms.ValidationError as exc:
                    self.add_error("authentication", exc)
                else:
                    credentials.update(
                        private_key=private_key, public_key=services.public_key_line(private_key)
                    )
        data["credentials"] = credentials
        return data

    def update(self, *, target: ComputeTarget, user) -> ComputeOperation:
        """Log in to `target` with these credentials from now on (the form is valid)."""
        return services.compute_credentials_update(
            target=target,
            user=user,
            username=self.cleaned_data["username"],
            **self.cleaned_data["credentials"],
        )


class VmAttachForm(ComputeNameMixin, VmCredentialsForm):
    """Attach a virtual machine over SSH (Compute → Attach → Virtual machine)."""

    name = compute_name_field()
    address = forms.CharField(
        label="Address or Azure resource ID",
        max_length=512,
        help_text=(
            "The VM's DNS name or IP address, e.g. myvm.westeurope.cloudapp.azure.com or "
            '10.0.0.4 — or its Azure resource ID, <code class="wrap">'
            "/subscriptions/&lt;subscription&gt;/resourceGroups/&lt;group&gt;"
            "/providers/Microsoft.Compute/virtualMachines/&lt;vm&gt;</code>."
        ),
    )
    reachable_address = forms.CharField(
        label="Reachable address (with a resource ID)",
        max_length=255,
        required=False,
        help_text=(
            "Trainyard connects over SSH, which a resource ID cannot do: when you give a resource "
            "ID, also give the DNS name or IP address this server can reach the VM at (the "
            "portal shows it on the VM's Overview page)."
        ),
    )
    port = forms.IntegerField(
        label="SSH port",
        initial=22,
        min_value=1,
        max_value=65535,
        help_text="22 unless the VM's sshd listens elsewhere.",
    )

    field_order = [
        "name",
        "address",
        "reachable_address",
        "port",
        "username",
        "authentication",
        "private_key",
        "private_key_file",
        "passphrase",
        "password",
        "generated_key",
    ]

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_address(self):
        address = self.cleaned_data["address"].strip()
        if RESOURCE_ID_RE.fullmatch(address):
            return address
        if address.lower().startswith("/subscriptions/"):
            raise forms.ValidationError(
                "This looks like an Azure resource ID but is incomplete: it must read "
                "/subscriptions/<subscription>/resourceGroups/<group>/providers/"
                "Microsoft.Compute/virtualMachines/<vm>."
            )
        return _host(address)

    def clean_reachable_address(self):
        address = self.cleaned_data["reachable_address"].strip()
        return _host(address) if address else ""

    def clean(self):
        data = super().clean()
        address = data.get("address", "")
        if address and RESOURCE_ID_RE.fullmatch(address):
            if not data.get("reachable_address") and "reachable_address" not in self.errors:
                self.add_error(
                    "reachable_address",
                    "A resource ID names the VM but cannot be connected to: enter the DNS name "
                    "or IP address of the VM as well.",
                )
            data["resource_id"] = address
            data["host"] = data.get("reachable_address", "")
        else:
            data["resource_id"] = ""
            data["host"] = address or data.get("reachable_address", "")
        return data

    def attach(self, *, user) -> ComputeOperation:
        """Attach the VM the form describes (the form is valid); page and API both call this."""
        data = self.cleaned_data
        return services.vm_attach(
            workspace=self.workspace,
            user=user,
            name=data["name"],
            address=data["host"],
            resource_id=data["resource_id"],
            port=data["port"],
            username=data["username"],
            **data["credentials"],
        )


def _host(address: str) -> str:
    host = _host_syntax(address)
    try:
        outbound_policy().check_host(host)
    except OutboundRefused as exc:
        raise forms.ValidationError(exc.message) from None
    return host


def _host_syntax(address: str) -> str:
    if "@" in address:
        raise forms.ValidationError(
            "Enter only the host here; the user name goes in the Username field."
        )
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        pass
    if re.fullmatch(r".+:\d+", address):
        raise forms.ValidationError("Enter the host without a port; the port has its own field.")
    if not HOST_NAME_RE.fullmatch(address):
        raise forms.ValidationError(
            "Enter a DNS name (letters, digits, hyphens and dots) or an IP address."
        )
    return address


class HdInsightAttachForm(ComputeNameMixin, VmCredentialsForm):
    """Attach an HDInsight cluster or any Spark head node (Compute → Attach → HDInsight / Spark)."""

    machine = "head node"

    name = compute_name_field()
    address = forms.CharField(
        label="Address",
        max_length=255,
        help_text=(
            "For HDInsight, the cluster's SSH endpoint <code>&lt;cluster&gt;-ssh.azurehdinsight"
            ".net</code> (the portal shows it under Settings → SSH + Cluster login). Any Spark "
            "head node reachable over SSH works too: its DNS name or IP address."
        ),
    )
    port = forms.IntegerField(
        label="SSH port",
        initial=22,
        min_value=1,
        max_value=65535,
        help_text="22 for HDInsight (its edge node may use 22 or 23), or wherever sshd listens.",
    )
    spark_master = forms.CharField(
        label="Spark master",
        required=False,
        max_length=255,
        help_text=(
            "Leave empty to use what the cluster uses: YARN where yarn is on PATH or "
            f"HADOOP_CONF_DIR is set, else {spark.LOCAL_MASTER}. Or enter {spark.MASTER_HELP}."
        ),
    )

    field_order = [
        "name",
        "address",
        "port",
        "spark_master",
        "username",
        "authentication",
        "private_key",
        "private_key_file",
        "passphrase",
        "password",
        "generated_key",
    ]

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        self.fields["username"].help_text = (
            "The cluster's SSH user (sshuser by default on HDInsight, not the admin login): "
            "Trainyard logs in and runs spark-submit as this user."
        )

    def clean_address(self):
        return _host(self.cleaned_data["address"].strip())

    def clean_spark_master(self):
        return _spark_master(self.cleaned_data["spark_master"])

    def attach(self, *, user) -> ComputeOperation:
        """Attach the head node the form describes (the form is valid)."""
        data = self.cleaned_data
        return services.hdinsight_attach(
            workspace=self.workspace,
            user=user,
            name=data["name"],
            address=data["address"],
            port=data["port"],
            spark_master=data["spark_master"],
            username=data["username"],
            **data["credentials"],
        )


class SparkMasterForm(forms.Form):
    """The master PySpark runs on an HDInsight / Spark target submit to."""

    spark_master = HdInsightAttachForm.base_fields["spark_master"]

    def clean_spark_master(self):
        return _spark_master(self.cleaned_data["spark_master"])

    def update(self, *, target: ComputeTarget) -> None:
        """Make `target`'s PySpark runs submit to this master (the form is valid)."""
        services.hdinsight_master_set(target=target, spark_master=self.cleaned_data["spark_master"])


def _spark_master(value: str) -> str:
    master = value.strip()
    problem = spark.master_problem(master)
    if problem:
        raise forms.ValidationError(problem)
    return master
