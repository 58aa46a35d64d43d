from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from studio.services import token_create


class Command(BaseCommand):
    help = "Create a personal access token for USERNAME and print it (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="What the token is for, e.g. 'ci'.")

    def handle(self, *args, username, name, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}. Create one at /admin/ first.")
        _, raw = token_create(user=user, name=name)
        self.stdout.write(raw)
