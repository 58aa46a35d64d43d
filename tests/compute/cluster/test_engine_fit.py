"""Whether a VM size fits a Docker engine: the GPUs it reports, the message naming them."""

from compute.cluster.engines import EngineFacts, engine_gpu_count, size_fit_problem
from compute.cluster.sizes import GIB, vm_size_get

# What `docker info` lists on a Docker 28 engine with the NVIDIA toolkit's CDI specs.
TWO_GPUS_CDI = {
    "DiscoveredDevices": [
        {"Source": "cdi", "ID": "nvidia.com/gpu=0"},
        {"Source": "cdi", "ID": "nvidia.com/gpu=1"},
        {"Source": "cdi", "ID": "nvidia.com/gpu=GPU-4c6bc0ab-1f0e-2e3a-88c3-2d4b1f3a9e01"},
        {"Source": "cdi", "ID": "nvidia.com/gpu=GPU-9a1d2c3b-4e5f-6a7b-8c9d-0e1f2a3b4c5d"},
        {"Source": "cdi", "ID": "nvidia.com/gpu=all"},
    ]
}


def gpu_engine(gpus: int | None) -> EngineFacts:
    return EngineFacts(
        cpus=64,
        memory_bytes=512 * GIB,
        gpu_runtime=True,
        server_version="28.3.0",
        node_image=True,
        gpus=gpus,
    )


def test_gpus_are_counted_once_whatever_names_the_toolkit_gave_them():
    assert engine_gpu_count(TWO_GPUS_CDI) == 2
    by_uuid = {"DiscoveredDevices": TWO_GPUS_CDI["DiscoveredDevices"][2:]}
    assert engine_gpu_count(by_uuid) == 2


def test_an_engine_listing_no_gpu_tells_nothing_about_its_gpus():
    assert engine_gpu_count({"ServerVersion": "20.10.24"}) is None
    fpga_only = {"DiscoveredDevices": [{"Source": "cdi", "ID": "vendor.com/fpga=0"}]}
    assert engine_gpu_count(fpga_only) is None


def test_a_size_needing_more_gpus_than_the_engine_has_names_the_limit():
    size = vm_size_get("Standard_NC24")
    assert size is not None and size.gpus == 4
    assert size_fit_problem(size, gpu_engine(2), "gpu-box") == (
        "Standard_NC24 has 4 GPUs, but Docker engine gpu-box has 2 GPUs: pick a size with at "
        "most 2 GPUs, or register an engine with more GPUs"
    )
    size = vm_size_get("Standard_NC12")
    assert size is not None
    assert size_fit_problem(size, gpu_engine(1), "gpu-box") == (
        "Standard_NC12 has 2 GPUs, but Docker engine gpu-box has 1 GPU: pick a size with at "
        "most 1 GPU, or register an engine with more GPUs"
    )


def test_a_size_fits_an_engine_with_enough_gpus_or_an_untold_count():
    size = vm_size_get("Standard_NC12")
    assert size is not None
    assert size_fit_problem(size, gpu_engine(2), "gpu-box") == ""
    assert size_fit_problem(size, gpu_engine(None), "gpu-box") == ""
