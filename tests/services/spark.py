"""A Spark head node for tests: a real sshd whose user can run the real spark-submit.

Spark is the `pyspark` wheel of the test requirements, run by Java 17. The
head node's login environment points SPARK_HOME at that wheel (the way a Spark
install outside HDInsight is set up), so Trainyard finds spark-submit through
$SPARK_HOME/bin, as its preflight tells users to do. sshd's SetEnv carries the
environment, so only this server's sessions see Spark: the plain `sshd` of the
other tests stays a head node without it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.services.sshd import SshServer


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_home() -> Path:
    java = shutil.which("java")
    if java is None:
        pytest.fail("Java 17 is not installed: run scripts/test-system-deps.sh as root")
    return Path(os.path.realpath(java)).parents[1]


def head_node_environment() -> dict[str, str]:
    return {
        "SPARK_HOME": str(spark_home()),
        "JAVA_HOME": str(java_home()),
        # The test user cannot run this venv's interpreter (it lives under /root);
        # the driver and workers use the system Python, and spark-submit puts
        # the wheel's pyspark.zip and py4j on their PYTHONPATH.
        "PYSPARK_PYTHON": "/usr/bin/python3",
        # Spark binds its driver to the loopback, never to another interface.
        "SPARK_LOCAL_IP": "127.0.0.1",
    }


def with_spark(server: SshServer, **extra: str) -> SshServer:
    """Restart `server` with Spark (and the `extra` variables) in its users' environment."""
    environment = head_node_environment() | extra
    settings = " ".join(f'"{name}={value}"' for name, value in environment.items())
    with server.config.open("a") as config:
        config.write(f"SetEnv {settings}\n")
    server.stop()
    server.start()
    return server


@pytest.fixture(scope="session")
def spark_head_node(sshd_factory) -> SshServer:
    """An sshd on 127.0.0.1 whose user `tytest` has spark-submit (local master, no YARN)."""
    return with_spark(sshd_factory())
