"""Run code on the Trainyard server itself, without the studio's privileges.

A run on the local target executes as a dedicated unprivileged account
(`LOCAL_RUN_USER`) inside a bubblewrap sandbox: its own PID, IPC and UTS
namespaces, the machine's file system read-only, `DATA_DIR` (database, keys,
blobs, logs, other runs) replaced by an empty directory, and writable only its
own working directory, its metrics file and a private /tmp. Setting that up
needs root, so a studio started by another user has no isolation, and then
only staff may use the local target (`local_target_problem`).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

# The sandbox's own /tmp: an empty tmpfs in its mount namespace, not the machine's.
TMP = "/tmp"  # nosec B108: mounted fresh for each run, shared with nothing
ENABLE_HINT = (
    "Start Trainyard as root (`make run` then creates the unprivileged account "
    "{user} and installs bubblewrap), or set LOCAL_TARGET_ACCESS=off and use a VM or a "
    "compute cluster."
)


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int


def run_account() -> Account | None:
    """The account local runs execute as, if this machine has it."""
    try:
        entry = pwd.getpwnam(settings.LOCAL_RUN_USER)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return None
    return Account(uid=entry.pw_uid, gid=entry.pw_gid)


@lru_cache(maxsize=1)
def _probe() -> str:
    """Why a sandbox cannot be started here ("" when one can), tried once per process."""
    if os.geteuid() != 0:
        return "Trainyard is not running as root, so it cannot start runs as another account."
    account = run_account()
    if account is None:
        return f"The account {settings.LOCAL_RUN_USER} that local runs execute as does not exist."
    for tool in ("bwrap", "setpriv", "setsid"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian packages bubblewrap and util-linux)."
    try:
        result = subprocess.run(
            [*_bwrap_base(), "--", *_drop(account), "true"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not start: {exc}"
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-300:]
        return f"bubblewrap could not start a sandbox here: {detail or 'no output'}"
    return ""


def isolation_problem() -> str:
    """Why local runs cannot be isolated here, with how to fix it ("" when they can)."""
    reason = _probe()
    if not reason:
        return ""
    return f"{reason} {ENABLE_HINT.format(user=settings.LOCAL_RUN_USER)}"


def local_target_problem(user) -> str:
    """Why `user` may not run code on the local target ("" when they may)."""
    access = settings.LOCAL_TARGET_ACCESS
    if access == "off":
        return (
            "The local target is turned off on this server (LOCAL_TARGET_ACCESS=off): "
            "choose a VM or a compute cluster."
        )
    if user is not None and user.is_staff:
        return ""
    if access == "staff":
        return (
            "Only staff may run code on the local target of this server "
            "(LOCAL_TARGET_ACCESS=staff): choose a VM or a compute cluster."
        )
    problem = isolation_problem()
    if problem:
        return (
            "Only staff may use the local target here, because runs on it cannot be isolated "
            f"from the studio: {problem}"
        )
    return ""


def _bwrap_base(made: set[str] | None = None, hidden: list[Path] | None = None) -> list[str]:
    """The sandbox every local run gets, before its own directories are added."""
    made = set() if made is None else made
    hidden = [Path(TMP), Path(settings.DATA_DIR)] if hidden is None else hidden
    args = [
        "bwrap",
        "--ro-bind", "/", "/",
        "--dev", "/dev",
        "--proc", "/proc",
        "--perms", "1777", "--tmpfs", TMP,
        "--perms", "1777", "--tmpfs", "/dev/shm",  # nosec B108: the sandbox's own
        "--perms", "0711", "--tmpfs", str(settings.DATA_DIR),
    ]  # fmt: skip
    for path in _interpreters():
        args += _reachable(path, hidden, made)
        args += ["--ro-bind", str(path), str(path)]
    return [
        *args,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--setenv", "HOME", TMP,
    ]  # fmt: skip


def _interpreters() -> list[Path]:
    """Python installations under a directory the run account cannot enter (a pyenv in
    /root, say), so a user-managed environment may name the studio's own interpreter."""
    found = set()
    for prefix in (Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()):
        if not _traversable(prefix) and not _inside(prefix, Path(settings.DATA_DIR)):
            found.add(prefix)
    return sorted(found)


def _traversable(path: Path) -> bool:
    """Whether any account may enter `path` (and every directory above it)."""
    for part in [*reversed(path.parents), path]:
        try:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                return False
        except OSError:
            return False
    return True


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _reachable(path: Path, hidden: list[Path], made: set[str]) -> list[str]:
    """bwrap arguments that let the run account enter (not list) the directories above
    `path`: an empty directory over one it could not enter, and inside those empty ones
    (and the sandbox's own /tmp and DATA_DIR) a directory of its own for each level.
    `hidden` and `made` carry what earlier paths already set up."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent == Path("/") or str(parent) in made or parent in hidden:
            continue
        if any(_inside(parent, root) for root in hidden):
            args += ["--perms", "0711", "--dir", str(parent)]
        elif _traversable(parent):
            continue
        else:
            args += ["--perms", "0711", "--tmpfs", str(parent)]
            hidden.append(parent)
        made.add(str(parent))
    return args


def _drop(account: Account) -> list[str]:
    return [
        "setpriv",
        f"--reuid={account.uid}",
        f"--regid={account.gid}",
        "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


def sandbox_command(*, workdir: str, writable: list[str], readable: list[str]) -> list[str]:
    """The command prefix that runs a program of a run in its sandbox, as the run account,
    in `workdir`; `writable` and `readable` are the run's own paths it may use (under
    DATA_DIR, which is otherwise empty in the sandbox)."""
    account = run_account()
    assert account is not None
    made: set[str] = set()
    hidden = [Path(TMP), Path(settings.DATA_DIR)]
    args = _bwrap_base(made, hidden)
    for flag, paths in (("--bind", writable), ("--ro-bind", readable)):
        for path in paths:
            args += _reachable(Path(path), hidden, made)
            args += [flag, path, path]
    return [*args, "--chdir", workdir, "--", *_drop(account)]
