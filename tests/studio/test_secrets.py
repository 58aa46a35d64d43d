import logging

from cryptography.fernet import Fernet
from django.db import connection

from compute.models import ComputeKind, ComputeTarget
from studio.secrets import MASK, SecretInput, redact, rotate_all


def make_target(workspace, **secrets):
    return ComputeTarget.objects.create(
        workspace=workspace, name="vm1", kind=ComputeKind.VM, address="10.0.0.4", **secrets
    )


def raw_column(target, column):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM compute_computetarget WHERE id = %s", [target.pk])
        return cursor.fetchone()[0]


def test_secrets_are_encrypted_at_rest(workspace):
    target = make_target(workspace, password="hunter2-very-secret")
    stored = raw_column(target, "password")
    assert "hunter2" not in stored and stored.startswith("gAAAA")
    assert ComputeTarget.objects.get(pk=target.pk).password == "hunter2-very-secret"


def test_rotation_keeps_old_secrets_readable(workspace, settings):
    old_key = settings.FERNET_KEYS[0]
    target = make_target(workspace, private_key="-----BEGIN KEY-----abc")
    new_key = Fernet.generate_key().decode()
    settings.FERNET_KEYS = [new_key, old_key]
    assert ComputeTarget.objects.get(pk=target.pk).private_key == "-----BEGIN KEY-----abc"
    assert rotate_all() >= 1
    settings.FERNET_KEYS = [new_key]
    assert ComputeTarget.objects.get(pk=target.pk).private_key == "-----BEGIN KEY-----abc"


def test_secret_widget_never_renders_the_value():
    html = SecretInput().render("password", "hunter2-very-secret")
    assert "hunter2" not in html and 'type="password"' in html


def test_known_secrets_are_masked_in_text_and_logs(workspace, caplog):
    target = make_target(workspace, access_token="dapi-0123456789abcdef")
    ComputeTarget.objects.get(pk=target.pk)
    # Text users see is masked with the secrets given (their workspace's), nothing else.
    assert redact("token=dapi-0123456789abcdef failed", []) == "token=dapi-0123456789abcdef failed"
    assert redact("connect with pw s3cr3t-pass", ["s3cr3t-pass"]).endswith(MASK)
    from studio.secrets import RedactingFilter

    logger = logging.getLogger("trainyard.test")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="trainyard.test"):
        logger.info("calling with %s", "dapi-0123456789abcdef")
    assert "dapi-0123456789abcdef" not in caplog.text and MASK in caplog.text
