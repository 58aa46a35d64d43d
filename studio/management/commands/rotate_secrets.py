from typing import Any

from django.core.management.base import BaseCommand

from studio.secrets import rotate_all


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the first key of FERNET_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = rotate_all()
        self.stdout.write(f"Re-encrypted {count} secret(s) with the newest key.")
