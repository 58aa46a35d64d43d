"""The submit page's plan: which files of a chosen folder the workspace holds, signed.

The page asks with the SHA-256 of each file the ignore rules keep. The answer
names the files it must send, and carries the sizes of the others signed for
this workspace and exactly this list of digests, so the submit that follows
takes those files as the workspace's stored ones without looking each digest
up again. A submit without a valid plan (none, expired, or of another folder)
has its digests looked up like any other.
"""

import hashlib

from django.core import signing

SALT = "runs.upload_plan"
MAX_AGE_SECONDS = 24 * 3600


def plan_sign(*, workspace, hashes: list[str], sizes: dict[str, int]) -> str:
    """The signed plan of `hashes`: `sizes` has those of the files the workspace holds."""
    plan = {
        "workspace": workspace.pk,
        "hashes": _digest_of(hashes),
        "sizes": [sizes.get(sha) for sha in hashes],
    }
    return signing.dumps(plan, salt=SALT, compress=True)


def plan_sizes(token: str, *, workspace, hashes: list[str]) -> dict[str, int]:
    """The sizes of the held files a valid plan of `hashes` for the workspace names, else {}."""
    if not token:
        return {}
    try:
        plan = signing.loads(token, salt=SALT, max_age=MAX_AGE_SECONDS)
    except signing.BadSignature:
        return {}
    if plan["workspace"] != workspace.pk or plan["hashes"] != _digest_of(hashes):
        return {}
    return {sha: size for sha, size in zip(hashes, plan["sizes"], strict=True) if size is not None}


def _digest_of(hashes: list[str]) -> str:
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()
