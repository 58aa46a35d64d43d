"""The git facts of a snapshot's folder: repository, branch, commit and dirty flag."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

# The files of .git/ the submit page sends for the run's git facts (never its objects).
GIT_FILES = re.compile(r"HEAD|config|packed-refs|refs/heads/[^\s]{1,255}")
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def git_info_from(files: dict[str, str]) -> dict:
    """Repository, branch and commit from a checkout's .git/HEAD, config and refs.

    A folder chosen in the browser arrives without git's object database, so
    whether the tree has uncommitted changes is not known.
    """
    head = files.get("HEAD", "").strip()
    branch, commit = "HEAD", head
    if head.startswith("ref: "):
        ref = head.removeprefix("ref: ").strip()
        branch = ref.removeprefix("refs/heads/")
        commit = files.get(ref, "").strip() or _packed_ref(files.get("packed-refs", ""), ref)
    if not COMMIT.fullmatch(commit):
        return {}
    return {
        "repository": _origin_url(files.get("config", "")),
        "branch": branch,
        "commit": commit,
    }


def _packed_ref(packed: str, ref: str) -> str:
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref:
            return sha
    return ""


def _origin_url(config: str) -> str:
    section = ""
    for line in config.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]':
            key, _, value = line.partition("=")
            if key.strip() == "url":
                return repository_url(value.strip())
    return ""


def repository_url(url: str) -> str:
    """A remote's URL without the user or token an https URL may carry."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url)


def git_info(root: Path) -> dict:
    """Repository, branch, commit and dirty flag of the folder, if it is a git checkout."""
    if not (root / ".git").exists():
        return {}

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-c", f"safe.directory={root}", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    return {
        "repository": repository_url(git("config", "--get", "remote.origin.url")),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "commit": commit,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }
