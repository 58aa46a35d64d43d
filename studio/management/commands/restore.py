from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from studio.backup import backup_restore
from studio.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Restore the backup in SRC (from `manage.py backup`) into this studio's DATA_DIR and "
        "database, which must be new and empty. Start Trainyard after it."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("src", type=Path, help="the backup's folder")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            manifest = backup_restore(source=options["src"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        counts = ", ".join(f"{count} {name}" for name, count in manifest["counts"].items())
        self.stdout.write(
            f"Restored the backup of {manifest['created_at']}: {counts}. Start Trainyard "
            "(make run, or manage.py up) to use it."
        )
        for name in manifest["keys_from_environment"]:
            self.stdout.write(
                f"The backed-up studio read {name} from its environment: set the same "
                "value here before starting, or its secrets cannot be read."
            )
