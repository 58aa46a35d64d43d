import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from compute.cluster.engines import ENGINE_ERRORS, EngineError, engine_client
from compute.cluster.node_image import (
    NODE_IMAGE,
    Builder,
    NodeImageError,
    node_image_ensure,
    node_image_present,
)


class Command(BaseCommand):
    help = (
        f"Build the managed-cluster node image ({NODE_IMAGE}) on a Docker engine that lacks it: "
        "debootstrap on this server, then an import into the engine; nothing is pulled."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--engine",
            default=os.environ.get("DOCKER_HOST") or settings.CLUSTER_DEFAULT_ENGINE_URL,
            help="The engine's URL (default: DOCKER_HOST, else CLUSTER_DEFAULT_ENGINE_URL).",
        )

    def handle(self, *args, engine, **options):
        try:
            if node_image_present(engine_client(engine)):
                return
            done = node_image_ensure(
                engine,
                builder=Builder(workspace_id=None, label="`make node-image`"),
                progress=self.stdout.write,
            )
        except (NodeImageError, EngineError) as exc:
            raise CommandError(str(exc)) from exc
        except ENGINE_ERRORS as exc:
            raise CommandError(f"Docker engine at {engine} is unreachable ({exc}).") from exc
        self.stdout.write(done)
