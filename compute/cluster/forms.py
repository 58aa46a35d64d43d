from typing import cast

from django import forms

from compute.cluster.engines import EngineFacts
from compute.cluster.services import (
    ADMIN_KEY_MISSING,
    PRIORITIES,
    admin_username_problem,
    ssh_public_key_problem,
)
from compute.cluster.sizes import VM_SIZES, vm_size_get
from compute.models import DockerEngine
from compute.names import ComputeNameMixin, compute_name_field

TIERS = [("cpu", "CPU"), ("gpu", "GPU")]


class EngineChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: DockerEngine) -> str:
        facts = EngineFacts.from_dict(obj.facts)
        if obj.error or facts is None:
            return f"{obj.name} ({obj.url}) — not reachable at the last check"
        return f"{obj.name} ({obj.url}) — {facts.cpus} CPUs, {facts.memory_gib:.1f} GiB"


class ScaleForm(forms.Form):
    min_nodes = forms.IntegerField(
        label="Minimum nodes",
        min_value=0,
        initial=0,
        help_text="Nodes kept even when no run needs them. 0 lets the cluster scale to nothing.",
    )
    max_nodes = forms.IntegerField(
        label="Maximum nodes",
        min_value=1,
        help_text="The cluster never grows past this; runs beyond it wait in the queue.",
    )
    idle_seconds_before_scaledown = forms.IntegerField(
        label="Idle seconds before scale down",
        min_value=0,
        initial=120,
        help_text="A node nobody used for this long is removed (down to the minimum).",
    )

    def clean(self):
        super().clean()
        data = self.cleaned_data
        low, high = data.get("min_nodes"), data.get("max_nodes")
        if low is not None and high is not None and low > high:
            self.add_error(
                "min_nodes",
                f"Minimum nodes ({low}) is above maximum nodes ({high}): lower it, "
                "or raise the maximum.",
            )
        return data


class ClusterForm(ComputeNameMixin, ScaleForm):
    name = compute_name_field()
    vm_tier = forms.ChoiceField(
        label="Virtual machine tier",
        choices=TIERS,
        initial="cpu",
        widget=forms.RadioSelect,
        help_text="GPU sizes need a Docker engine with the NVIDIA container runtime.",
    )
    vm_priority = forms.ChoiceField(
        label="Virtual machine priority",
        choices=list(PRIORITIES.items()),
        initial="dedicated",
        widget=forms.RadioSelect,
        help_text=(
            "Low-priority nodes can be preempted: when one disappears, its run goes back "
            "to the queue and starts again on another node. On a dedicated cluster that run fails."
        ),
    )
    vm_size = forms.ChoiceField(
        label="Virtual machine size",
        choices=[(size.name, size.name) for size in VM_SIZES],
        error_messages={"required": "Pick a virtual machine size from the table."},
    )
    engines = EngineChoiceField(
        label="Docker engines",
        queryset=DockerEngine.objects.none(),
        widget=forms.CheckboxSelectMultiple,
        help_text="Nodes are containers on these engines, spread evenly.",
        error_messages={"required": "Pick at least one Docker engine to place nodes on."},
    )
    vnet_name = forms.CharField(
        label="Virtual network",
        required=False,
        max_length=64,
        help_text="Optional. Where an engine has a Docker network of this name, nodes join it; "
        "otherwise they use the host network.",
    )
    subnet_name = forms.CharField(
        label="Subnet", required=False, max_length=64, help_text="Optional; stored and shown."
    )
    admin_username = forms.CharField(
        label="SSH admin user",
        required=False,
        max_length=32,
        help_text="Optional: a user created on every node for node access.",
    )
    admin_ssh_public_key = forms.CharField(
        label="SSH public key",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The admin user's public key (the contents of ~/.ssh/id_ed25519.pub). "
        "Create one with `ssh-keygen -t ed25519`.",
    )

    field_order = [
        "name",
        "vm_tier",
        "vm_priority",
        "vm_size",
        "min_nodes",
        "max_nodes",
        "idle_seconds_before_scaledown",
        "engines",
        "vnet_name",
        "subnet_name",
        "admin_username",
        "admin_ssh_public_key",
    ]

    def __init__(self, *args, workspace, **kwargs):
        super().__init__(*args, **kwargs)
        self.workspace = workspace
        engines = DockerEngine.objects.filter(workspace=workspace)
        cast(EngineChoiceField, self.fields["engines"]).queryset = engines
        self.fields["engines"].initial = list(engines)

    def clean_admin_username(self):
        user = self.cleaned_data["admin_username"].strip()
        if user and (problem := admin_username_problem(user)):
            raise forms.ValidationError(problem)
        return user

    def clean_admin_ssh_public_key(self):
        key = " ".join(self.cleaned_data["admin_ssh_public_key"].split())
        if key and (problem := ssh_public_key_problem(key)):
            raise forms.ValidationError(problem)
        return key

    def clean(self):
        data = super().clean()
        size = vm_size_get(data.get("vm_size") or "")
        tier = data.get("vm_tier")
        if size is not None and tier and size.tier != tier:
            self.add_error(
                "vm_size",
                f"{size.name} is a {size.tier.upper()} size: pick a {tier.upper()} size, "
                f"or switch the tier to {size.tier.upper()}.",
            )
        if data.get("admin_ssh_public_key") and not data.get("admin_username"):
            self.add_error("admin_username", "Give the user the public key is for.")
        user = data.get("admin_username")
        if user and not data.get("admin_ssh_public_key") and "admin_ssh_public_key" in data:
            self.add_error("admin_ssh_public_key", ADMIN_KEY_MISSING.format(user=user))
        return data


class EngineForm(forms.Form):
    name = forms.CharField(
        label="Engine name", max_length=32, help_text="How the cluster wizard lists this engine."
    )
    url = forms.CharField(
        label="Engine URL",
        max_length=255,
        help_text="ssh://user@host (this server's SSH key must log in without a password and "
        "the user may run docker), tcp://host:2376, or unix:///var/run/docker.sock.",
    )
