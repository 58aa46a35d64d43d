"""Preflight: what a machine reached over SSH offers runs (OS, CPUs, memory, GPUs, tools)."""

from __future__ import annotations

from compute.ssh.connection import SshConnection, shorten
from compute.ssh.keys import SshError

# One round trip, POSIX sh (run via `sh -c`, whatever the login shell is),
# one key=value per line so a missing tool only leaves its key empty.
_PREFLIGHT_SCRIPT = r"""
echo "system=$(uname -s)"
[ "$(uname -s)" = Linux ] || exit 0
if [ -r /etc/os-release ]; then
    (. /etc/os-release
     echo "os_name=$PRETTY_NAME"; echo "os_id=$ID"; echo "os_version=$VERSION_ID")
fi
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)"
echo "memory_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "disk_free_kib=$(df -Pk ~ 2>/dev/null | awk 'NR==2 {print $4}')"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits 2>/dev/null |
        sed 's/^/gpu=/'
fi
if command -v python3 >/dev/null 2>&1; then
    echo "python3=$(python3 -c 'import platform; print(platform.python_version())' 2>/dev/null)"
fi
# conda is usually only on PATH for interactive shells, so look in the usual places too.
for c in "$(command -v conda)" ~/miniconda3/bin/conda ~/anaconda3/bin/conda \
         ~/miniforge3/bin/conda /opt/conda/bin/conda /anaconda/bin/conda; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "conda=$c"; break; fi
done
if command -v docker >/dev/null 2>&1; then
    echo "docker=$(command -v docker)"
    if out=$(timeout 20 docker info 2>&1); then
        echo "docker_usable=1"
    else
        echo "docker_usable=0"
        case "$out" in *"permission denied"*) echo "docker_denied=1" ;; esac
    fi
fi
if command -v spark-submit >/dev/null 2>&1; then
    echo "spark_submit=$(command -v spark-submit)"
    version=$(spark-submit --version 2>&1 | grep -m 1 -o 'version [0-9][0-9.]*')
    echo "spark_version=${version#version }"
fi
"""


def gpu_fact(line: str) -> dict:
    """One line of `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`."""
    name, _, memory = line.rpartition(",")
    return {"name": name.strip(), "memory_mib": _int(memory)}


def preflight(conn: SshConnection) -> dict:
    """Facts about the host that decide whether and how runs can use it."""
    code, out, err = conn.run(["sh", "-c", _PREFLIGHT_SCRIPT], timeout=120)
    values: dict[str, str] = {}
    gpus = []
    for line in out.splitlines():
        name, sep, value = line.partition("=")
        if not sep:
            continue
        if name == "gpu":
            gpus.append(gpu_fact(value))
        else:
            values[name] = value.strip()

    system = values.get("system", "")
    if system != "Linux":
        if system:
            found = f"a {system} system"
        else:
            found = f"no POSIX shell ({shorten(err.strip()) or f'exit code {code}'})"
        raise SshError(
            "not_linux",
            f"{conn.target.address} runs {found}; Trainyard runs jobs on Linux VMs only: "
            "attach a Linux VM instead.",
        )

    user = conn.username
    warnings = []
    docker_usable = values.get("docker_usable") == "1"
    if values.get("docker") and not docker_usable:
        if values.get("docker_denied") == "1":
            warnings.append(
                f"User {user} cannot run docker: add them to the docker group "
                f"(sudo usermod -aG docker {user}) and reconnect"
            )
        else:
            warnings.append(
                "Docker is installed but not running on the VM: start it "
                "(sudo systemctl start docker) and reconnect"
            )

    return {
        "system": system,
        "os_name": values.get("os_name") or None,
        "os_id": values.get("os_id") or None,
        "os_version": values.get("os_version") or None,
        "kernel": values.get("kernel"),
        "arch": values.get("arch"),
        "cpus": _int(values.get("cpus")),
        "memory_mib": _mib(values.get("memory_kib")),
        "disk_free_mib": _mib(values.get("disk_free_kib")),
        "gpus": gpus,
        "python3": values.get("python3") or None,
        "conda": values.get("conda") or None,
        "docker": values.get("docker") or None,
        "docker_usable": docker_usable,
        "spark_submit": values.get("spark_submit") or None,
        "spark_version": values.get("spark_version") or None,
        "warnings": warnings,
    }


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _mib(kib_text: str | None) -> int | None:
    kib = _int(kib_text)
    return None if kib is None else kib // 1024
