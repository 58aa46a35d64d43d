from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from studio.backup import backup_create
from studio.errors import ServiceError


class Command(BaseCommand):
    help = (
        "Copy the database and DATA_DIR's blobs, run logs and keys into the new folder DEST, "
        "while Trainyard runs. The backup holds the key to every stored secret: keep it safe."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("dest", type=Path, help="a folder that does not exist yet")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            manifest = backup_create(dest=options["dest"])
        except ServiceError as exc:
            raise CommandError(exc.message) from exc
        counts = ", ".join(f"{count} {name}" for name, count in manifest["counts"].items())
        self.stdout.write(
            f"Backed up to {options['dest']}: {counts}.\n"
            "It holds the key that decrypts every stored secret: only its owner can read "
            "it (mode 0700); keep it as safe as the studio itself."
        )
