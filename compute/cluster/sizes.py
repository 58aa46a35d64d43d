"""Azure virtual machine sizes a managed cluster can be created with.

The figures are Azure's published ones (vCPUs, memory, temporary storage,
GPUs). A node gets the CPU and memory of its size as container limits; the
temporary storage is shown so sizes can be compared as in the portal.
"""

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class VmSize:
    name: str
    family: str
    vcpus: int
    memory_gib: float
    temp_storage_gib: int
    gpus: int = 0
    gpu_model: str = ""

    @property
    def tier(self) -> str:
        return "gpu" if self.gpus else "cpu"

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * GIB)

    def describe(self) -> str:
        gpus = f", {self.gpus} × {self.gpu_model} GPU" if self.gpus else ""
        return (
            f"{self.name} ({self.vcpus} vCPUs, {self.memory_gib:g} GiB RAM"
            f"{gpus}, {self.temp_storage_gib} GiB temporary storage)"
        )


def _family(family: str, gpu_model: str, rows) -> list[VmSize]:
    return [
        VmSize(f"Standard_{name}", family, cpus, mem, temp, gpus, gpu_model if gpus else "")
        for name, cpus, mem, temp, gpus in rows
    ]


VM_SIZES: list[VmSize] = [
    *_family(
        "Dv2",
        "",
        [
            ("D1_v2", 1, 3.5, 50, 0),
            ("D2_v2", 2, 7, 100, 0),
            ("D3_v2", 4, 14, 200, 0),
            ("D4_v2", 8, 28, 400, 0),
            ("D5_v2", 16, 56, 800, 0),
            ("D11_v2", 2, 14, 100, 0),
            ("D12_v2", 4, 28, 200, 0),
            ("D13_v2", 8, 56, 400, 0),
            ("D14_v2", 16, 112, 800, 0),
            ("D15_v2", 20, 140, 1000, 0),
        ],
    ),
    *_family(
        "DSv2",
        "",
        [
            ("DS1_v2", 1, 3.5, 7, 0),
            ("DS2_v2", 2, 7, 14, 0),
            ("DS3_v2", 4, 14, 28, 0),
            ("DS4_v2", 8, 28, 56, 0),
            ("DS5_v2", 16, 56, 112, 0),
            ("DS11_v2", 2, 14, 28, 0),
            ("DS12_v2", 4, 28, 56, 0),
            ("DS13_v2", 8, 56, 112, 0),
            ("DS14_v2", 16, 112, 224, 0),
        ],
    ),
    *_family(
        "Dv3",
        "",
        [
            ("D2_v3", 2, 8, 50, 0),
            ("D4_v3", 4, 16, 100, 0),
            ("D8_v3", 8, 32, 200, 0),
            ("D16_v3", 16, 64, 400, 0),
            ("D32_v3", 32, 128, 800, 0),
            ("D48_v3", 48, 192, 1200, 0),
            ("D64_v3", 64, 256, 1600, 0),
        ],
    ),
    *_family(
        "Dsv3",
        "",
        [
            ("D2s_v3", 2, 8, 16, 0),
            ("D4s_v3", 4, 16, 32, 0),
            ("D8s_v3", 8, 32, 64, 0),
            ("D16s_v3", 16, 64, 128, 0),
            ("D32s_v3", 32, 128, 256, 0),
            ("D48s_v3", 48, 192, 384, 0),
            ("D64s_v3", 64, 256, 512, 0),
        ],
    ),
    *_family(
        "F",
        "",
        [
            ("F1", 1, 2, 16, 0),
            ("F2", 2, 4, 32, 0),
            ("F4", 4, 8, 64, 0),
            ("F8", 8, 16, 128, 0),
            ("F16", 16, 32, 256, 0),
        ],
    ),
    *_family(
        "Fsv2",
        "",
        [
            ("F2s_v2", 2, 4, 16, 0),
            ("F4s_v2", 4, 8, 32, 0),
            ("F8s_v2", 8, 16, 64, 0),
            ("F16s_v2", 16, 32, 128, 0),
            ("F32s_v2", 32, 64, 256, 0),
            ("F48s_v2", 48, 96, 384, 0),
            ("F64s_v2", 64, 128, 512, 0),
            ("F72s_v2", 72, 144, 576, 0),
        ],
    ),
    *_family(
        "Ev3",
        "",
        [
            ("E2_v3", 2, 16, 50, 0),
            ("E4_v3", 4, 32, 100, 0),
            ("E8_v3", 8, 64, 200, 0),
            ("E16_v3", 16, 128, 400, 0),
            ("E20_v3", 20, 160, 500, 0),
            ("E32_v3", 32, 256, 800, 0),
            ("E64_v3", 64, 432, 1600, 0),
        ],
    ),
    *_family(
        "Esv3",
        "",
        [
            ("E2s_v3", 2, 16, 32, 0),
            ("E4s_v3", 4, 32, 64, 0),
            ("E8s_v3", 8, 64, 128, 0),
            ("E16s_v3", 16, 128, 256, 0),
            ("E20s_v3", 20, 160, 320, 0),
            ("E32s_v3", 32, 256, 512, 0),
            ("E64s_v3", 64, 432, 864, 0),
        ],
    ),
    *_family(
        "NC",
        "Tesla K80",
        [("NC6", 6, 56, 340, 1), ("NC12", 12, 112, 680, 2), ("NC24", 24, 224, 1440, 4)],
    ),
    *_family(
        "NCv2",
        "Tesla P100",
        [
            ("NC6s_v2", 6, 112, 736, 1),
            ("NC12s_v2", 12, 224, 1474, 2),
            ("NC24s_v2", 24, 448, 2948, 4),
        ],
    ),
    *_family(
        "NCv3",
        "Tesla V100",
        [
            ("NC6s_v3", 6, 112, 736, 1),
            ("NC12s_v3", 12, 224, 1474, 2),
            ("NC24s_v3", 24, 448, 2948, 4),
        ],
    ),
    *_family(
        "ND",
        "Tesla P40",
        [("ND6s", 6, 112, 736, 1), ("ND12s", 12, 224, 1474, 2), ("ND24s", 24, 448, 2948, 4)],
    ),
    *_family("NDv2", "Tesla V100", [("ND40rs_v2", 40, 672, 2948, 8)]),
    *_family(
        "NV",
        "Tesla M60",
        [("NV6", 6, 56, 340, 1), ("NV12", 12, 112, 680, 2), ("NV24", 24, 224, 1440, 4)],
    ),
    *_family(
        "NVv3",
        "Tesla M60",
        [
            ("NV12s_v3", 12, 112, 336, 1),
            ("NV24s_v3", 24, 224, 672, 2),
            ("NV48s_v3", 48, 448, 1344, 4),
        ],
    ),
]

_BY_NAME = {size.name.lower(): size for size in VM_SIZES}


def vm_size_get(name: str) -> VmSize | None:
    """The size called `name` (case-insensitive, as Azure treats size names)."""
    return _BY_NAME.get(name.strip().lower())


def vm_sizes_for_tier(tier: str) -> list[VmSize]:
    return [size for size in VM_SIZES if size.tier == tier]
