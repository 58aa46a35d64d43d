import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.db import migrations


def manifests_to_blobs(apps, schema_editor):
    """Move each snapshot's manifest from the database into a blob named by its sha256."""
    Snapshot = apps.get_model("runs", "Snapshot")
    for snapshot in Snapshot.objects.all():
        text = "".join(
            f"{path}\0{sha}\0{size}\0{int(executable)}\n"
            for path, sha, size, executable in snapshot.manifest
        ).encode()
        digest = hashlib.sha256(text).hexdigest()
        path = Path(settings.BLOB_DIR) / digest[:2] / digest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as f:
                f.write(text)
            os.replace(tmp, path)
        if Snapshot.objects.filter(workspace_id=snapshot.workspace_id, digest=digest).exists():
            continue
        Snapshot.objects.filter(pk=snapshot.pk).update(digest=digest)


class Migration(migrations.Migration):
    dependencies = [("runs", "0003_curated_minimal_python")]

    operations = [
        migrations.RunPython(manifests_to_blobs, migrations.RunPython.noop),
        migrations.RemoveField(model_name="snapshot", name="manifest"),
    ]
