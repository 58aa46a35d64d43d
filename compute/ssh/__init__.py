"""SSH to remote machines: keys, pinned connections, the shared pool, preflight.

The public names are re-exported here, so callers write `ssh.connect(...)`,
`ssh.pool.get(...)` or `ssh.SshError` whichever module holds them.
"""

from compute.ssh.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_RUN_TIMEOUT,
    MAX_SESSIONS,
    SshConnection,
    SshTarget,
    connect,
)
from compute.ssh.keys import SshError, generate_key_pair, parse_private_key
from compute.ssh.pool import DEFAULT_IDLE_SECONDS, SshPool, pool
from compute.ssh.preflight import gpu_fact, preflight

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_IDLE_SECONDS",
    "DEFAULT_RUN_TIMEOUT",
    "MAX_SESSIONS",
    "SshConnection",
    "SshError",
    "SshPool",
    "SshTarget",
    "connect",
    "generate_key_pair",
    "gpu_fact",
    "parse_private_key",
    "pool",
    "preflight",
]
