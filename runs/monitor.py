"""The run monitor: a long-lived process beside the web server and the Celery worker."""

import logging
import signal
import threading

from django.conf import settings

from studio.health import monitor_heartbeat, redis_client

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self) -> None:
        self.stopping = threading.Event()

    def stop(self, *_args) -> None:
        self.stopping.set()

    def run_forever(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        client = redis_client(timeout=2.0)
        log.info("run monitor started")
        while not self.stopping.is_set():
            try:
                monitor_heartbeat(client)
            except Exception as exc:
                log.warning("monitor heartbeat failed: %s", exc)
            self.stopping.wait(settings.MONITOR_HEARTBEAT_SECONDS)
        log.info("run monitor stopped")
