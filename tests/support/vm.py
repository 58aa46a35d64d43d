"""Shared pieces of the VM tests: the attach wizard driven as a user would, what it recorded."""

from __future__ import annotations

import html

from django.urls import reverse

from compute.models import ComputeOperation


def attach_url(workspace) -> str:
    return reverse("vm_attach", args=[workspace.slug])


def page_of(client, workspace, name: str) -> str:
    return html.unescape(
        client.get(reverse("compute_detail", args=[workspace.slug, name])).content.decode()
    )


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


def attach(client, workspace, data: dict, files: dict | None = None) -> str:
    response = client.post(attach_url(workspace), data | (files or {}), follow=True)
    return html.unescape(response.content.decode())


def steps_of(name: str) -> dict[str, tuple[str, str]]:
    operation = ComputeOperation.objects.filter(target_name=name).first()
    assert operation is not None, f"no operation recorded for {name}"
    return {step["key"]: (step["state"], step["detail"]) for step in operation.steps}


def logins(server) -> int:
    return server.log.read_text().count("Accepted ")
