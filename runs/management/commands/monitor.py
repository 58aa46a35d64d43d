from django.core.management.base import BaseCommand

from runs.monitor import Monitor


class Command(BaseCommand):
    help = "Run the run monitor: follows active runs, stores their logs, finishes them."

    def handle(self, *args, **options):
        Monitor().run_forever()
