import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from studio.launcher import Launcher, StartError, port_is_free
from studio.services import first_admin_create
from studio.supervisor import Supervisor


class Command(BaseCommand):
    help = "Run all of Trainyard: web server, Celery worker and beat, run monitor (and Redis)."

    def handle(self, *args: Any, **options: Any) -> None:
        host = os.getenv("HOST", "127.0.0.1")
        port = settings.PORT
        if not port_is_free(host, port):
            raise CommandError(
                f"Port {port} on {host} is already in use. Stop what uses it, or start "
                f"Trainyard on another port: PORT={port + 1} make run"
            )
        supervisor = Supervisor(out=self.stdout)
        launcher = Launcher(host=host, port=port, supervisor=supervisor)
        code = 1
        try:
            if settings.REDIS_EMBEDDED:
                launcher.start_embedded_redis()
            call_command("migrate", interactive=False, verbosity=0)
            credentials = first_admin_create()
            if credentials:
                self.show_first_admin(*credentials)
            launcher.start_services()
            self.stdout.write(f"Trainyard is running at http://{host}:{port}/  (Ctrl-C stops it)")
            self.stdout.write(f"Data directory: {settings.DATA_DIR}")
            self.stdout.flush()
            code = supervisor.watch()
        except StartError as exc:
            self.stderr.write(str(exc))
        finally:
            self.stdout.write("Stopping Trainyard…")
            supervisor.stop_all()
            self.stdout.write("Stopped.")
        if code:
            raise SystemExit(code)

    def show_first_admin(self, username: str, password: str) -> None:
        # Shown before the services start: the password exists only in this output, and a
        # start that fails later (a taken port, Ctrl-C) must not take it with it.
        self.stdout.write(
            "First start: sign in as\n"
            f"    username: {username}\n    password: {password}\n"
            "This password is shown only now: note it, and change it after signing in."
        )
        self.stdout.flush()
