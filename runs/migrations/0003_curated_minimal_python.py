from django.db import migrations

MINIMAL = {
    "name": "trainyard-minimal-python",
    "version": 1,
    "kind": "curated",
    "description": (
        "Python 3 as found on the compute target (python3 on its PATH), with nothing "
        "installed on top: enough for scripts that use only the standard library."
    ),
    "interpreter_path": "python3",
}


def add_minimal(apps, schema_editor):
    Environment = apps.get_model("runs", "Environment")
    Environment.objects.get_or_create(
        workspace=None, name=MINIMAL["name"], version=MINIMAL["version"], defaults=MINIMAL
    )


def remove_minimal(apps, schema_editor):
    Environment = apps.get_model("runs", "Environment")
    Environment.objects.filter(
        workspace=None, name=MINIMAL["name"], version=MINIMAL["version"]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("runs", "0002_run_arguments_run_cancel_reason_run_entry_script_and_more")]

    operations = [migrations.RunPython(add_minimal, remove_minimal)]
