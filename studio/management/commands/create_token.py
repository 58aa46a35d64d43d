from argparse import ArgumentParser
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from studio.services import token_create


class Command(BaseCommand):
    help = "Create a personal access token for USERNAME and print it (shown only this once)."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for, e.g. 'ci'.")
        parser.add_argument(
            "--expires-days",
            type=int,
            help="Refuse the token after this many days (default: never).",
        )
        parser.add_argument(
            "--read-only", action="store_true", help="The token may only read (GET requests)."
        )

    def handle(
        self,
        *args: Any,
        username: str,
        name: str,
        expires_days: int | None,
        read_only: bool,
        **options: Any,
    ) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}. Create one at /admin/ first.")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be 1 or more; leave it out for no expiry.")
        expires_at = None if expires_days is None else timezone.now() + timedelta(days=expires_days)
        _, raw = token_create(user=user, name=name, expires_at=expires_at, read_only=read_only)
        self.stdout.write(raw)
