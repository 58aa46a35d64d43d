from django.db import migrations, models


def git_facts_to_runs(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    for run in Run.objects.exclude(snapshot__git={}).select_related("snapshot"):
        if run.snapshot_id is not None:
            run.git = run.snapshot.git
            run.save(update_fields=["git"])


class Migration(migrations.Migration):
    dependencies = [("runs", "0005_run_framework")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="git",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(git_facts_to_runs, migrations.RunPython.noop),
        migrations.RemoveField(model_name="snapshot", name="git"),
    ]
