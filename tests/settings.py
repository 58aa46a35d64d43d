"""Settings for the test suite: the real ones, in a throwaway DATA_DIR."""

import os
import tempfile

os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="trainyard-test-"))
# `make test-fast` runs tests in parallel processes: each gets its own DATA_DIR (database,
# Redis socket, blobs) instead of the one its parent made.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["DATA_DIR"] = tempfile.mkdtemp(
        prefix=f"trainyard-test-{os.environ['PYTEST_XDIST_WORKER']}-"
    )
# The tests' own hosts: loopback, the network-namespace hosts (10.213.X.2), the VMs that
# are never reached (10.0.0.X) and the local Docker engine. In the environment, so the
# studio processes that end-to-end tests start follow the same rules.
os.environ.setdefault("OUTBOUND_ALLOW", "public,unix,127.0.0.0/8,::1,10.0.0.0/8")
# The node image's debootstrap tarball outlives the test run (as `make test` builds it):
# an engine without the image then costs the suite an import, not a debootstrap.
os.environ.setdefault(
    "CLUSTER_NODE_IMAGE_CACHE",
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".trainyard", "images"
    ),
)

from studio.settings import *  # noqa: E402,F403
from studio.settings import DATA_DIR, DATABASES  # noqa: E402

# A file, not :memory:, so processes started by tests (worker, monitor, web) share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# In-process tests run enqueued tasks at once (the real task code, no broker);
# the end-to-end tests run the real worker through `manage.py up`.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True

# Playwright's sync API runs an event loop in the test thread.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
