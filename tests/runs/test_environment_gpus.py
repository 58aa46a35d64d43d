"""Docker environments that give their container the target's GPUs."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.models import ComputeTarget
from runs.models import Environment, Run
from tests.runs.test_run_pages import folder, submit_data

pytestmark = pytest.mark.django_db

GPU_RUNCONFIG = b"""\
script: train.py
target: local
environment:
  python:
    userManagedDependencies: true
    interpreterPath: python3
  docker:
    enabled: true
    baseImage: nvidia/cuda:12.4.1-runtime-ubuntu22.04
    gpuSupport: true
"""


def test_an_environment_gives_its_container_the_gpus_only_with_an_image(workspace, as_carol):
    url = reverse("environment_create", args=[workspace.slug])
    data = {"name": "cuda", "kind": "user", "docker_gpus": "on"}
    refused = as_carol.post(url, data).content.decode()
    assert "GPUs are given to the run&#x27;s Docker container: name a Docker base image" in refused
    image = "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    as_carol.post(url, data | {"docker_image": image})
    assert Environment.objects.get(workspace=workspace, name="cuda").docker_gpus
    listed = as_carol.get(reverse("environment_list", args=[workspace.slug])).content.decode()
    assert f"{image}, with the target's GPUs" in listed


def gpu_submit(client, workspace):
    data = submit_data(entry_script="", target="", environment="", arguments="")
    data["source_paths"] = "p/train.py"
    data["source_folder"] = folder(("p/train.py", b"print(1)"))
    data["runconfig"] = SimpleUploadedFile("local.runconfig", GPU_RUNCONFIG)
    return client.post(reverse("run_submit", args=[workspace.slug]), data)


def test_a_runconfig_with_gpu_support_asks_for_a_target_with_gpus(workspace, as_carol):
    page = gpu_submit(as_carol, workspace).content.decode()
    # The local target's check found no GPU here.
    assert "gives its container the target&#x27;s GPUs, but local has no GPU" in page
    assert "choose a VM with NVIDIA GPUs" in page
    assert not Run.objects.exists()
    env = Environment.objects.get(workspace=workspace, docker_gpus=True)
    assert env.docker_image == "nvidia/cuda:12.4.1-runtime-ubuntu22.04"

    # On a target whose check found a GPU, the run is submitted with that environment.
    local = ComputeTarget.objects.get(workspace=workspace, name="local")
    local.facts = dict(local.facts or {}, gpus=[{"name": "NVIDIA A100", "memory_mib": 40960}])
    local.save(update_fields=["facts"])
    assert gpu_submit(as_carol, workspace).status_code == 302
    assert Run.objects.get().environment == env
