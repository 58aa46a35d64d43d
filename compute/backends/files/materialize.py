"""Copy a snapshot's blobs into a run's working directory (runs on the target).

Usage: python3 materialize.py MANIFEST_JSON BLOB_DIR WORK_DIR
Copies, not links: a script that rewrites one of its files must not change the
blob other runs share.
"""

import json
import os
import shutil
import sys

manifest_path, blobs, work_dir = sys.argv[1:4]
with open(manifest_path) as f:
    manifest = json.load(f)
made = set()
for path, sha, _size, executable in manifest:
    target = os.path.join(work_dir, path)
    folder = os.path.dirname(target)
    if folder not in made:
        os.makedirs(folder, exist_ok=True)
        made.add(folder)
    shutil.copyfile(os.path.join(blobs, sha[:2], sha), target)
    if executable:
        os.chmod(target, 0o755)  # noqa: S103 - the snapshot's executable bit
print(f"{len(manifest)} files unpacked")
