"""Copy a snapshot's blobs into a run's working directory (runs on the target).

Usage: python3 materialize.py MANIFEST BLOB_DIR WORK_DIR
MANIFEST has one file per line: path, sha256, size, executable (0/1), NUL-separated.
Copies, not links: a script that rewrites one of its files must not change the
blob other runs share.
"""

import os
import shutil
import sys

manifest_path, blobs, work_dir = sys.argv[1:4]
with open(manifest_path, encoding="utf-8") as f:
    manifest = [line.rstrip("\n").split("\0") for line in f if line.strip()]
made = set()
for path, sha, _size, executable in manifest:
    target = os.path.join(work_dir, path)
    folder = os.path.dirname(target)
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    shutil.copyfile(os.path.join(blobs, sha[:2], sha), target)
    if executable == "1":
        os.chmod(target, 0o755)  # noqa: S103 - the snapshot's executable bit  # nosec B103
print(f"{len(manifest)} files unpacked")
