"""Attaching VMs through the wizard against real sshd servers (tests/services/sshd.py)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.models import ComputeTarget

pytestmark = pytest.mark.django_db(transaction=True)


def attach_url(workspace) -> str:
    return reverse("vm_attach", args=[workspace.slug])


def detail(client, workspace, name: str) -> str:
    return client.get(reverse("compute_detail", args=[workspace.slug, name])).content.decode()


def form_data(server, name="gpu-vm", **overrides) -> dict:
    data = {
        "name": name,
        "address": server.host,
        "port": server.port,
        "username": server.username,
        "authentication": "password",
        "password": server.password,
    }
    return data | overrides


def test_attach_with_password_pins_host_key_and_shows_facts(sshd, workspace, as_carol, as_bob):
    response = as_carol.post(attach_url(workspace), form_data(sshd), follow=True)
    page = response.content.decode()
    assert "Attaching gpu-vm" in page
    assert "Succeeded" in page
    assert sshd.host_key_fingerprint in page
    assert "First contact: pinned" in page
    target = ComputeTarget.objects.get(name="gpu-vm")
    assert target.facts["system"] == "Linux"
    assert sshd.password not in page
    page = detail(as_bob, workspace, "gpu-vm")
    assert "Operating system" in page and "CPUs" in page
