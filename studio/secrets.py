"""Secrets at rest and in text: an encrypted model field and redaction of known values.

Every value decrypted in this process is remembered (in memory only), so log
records and error messages can mask it wherever it appears.
"""

import logging
import threading

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.conf import settings
from django.db import models

MASK = "******"
_known: set[str] = set()
_known_lock = threading.Lock()
# Short values would mask innocent text (a password "a" would eat every "a").
MIN_REDACT_LENGTH = 4


def remember_secret(value: str | None) -> None:
    if value and len(value) >= MIN_REDACT_LENGTH:
        with _known_lock:
            _known.add(value)
            for line in value.splitlines():
                if len(line.strip()) >= 16:
                    _known.add(line.strip())


def redact(text: str, extra: list[str] | tuple[str, ...] = ()) -> str:
    """Mask every known secret (and each of `extra`) in `text`."""
    with _known_lock:
        values = set(_known)
    values.update(v for v in extra if v and len(v) >= MIN_REDACT_LENGTH)
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_bytes(data: bytes, extra: list[str] | tuple[str, ...] = ()) -> bytes:
    with _known_lock:
        values = set(_known)
    values.update(v for v in extra if v and len(v) >= MIN_REDACT_LENGTH)
    for value in sorted(values, key=len, reverse=True):
        data = data.replace(value.encode(), MASK.encode())
    return data


def secret_prefix_at_end(data: bytes) -> int:
    """How many bytes at the end of `data` begin a known secret (0 if none do).

    A stream read in pieces can end in the middle of a secret; holding those
    bytes back until the rest arrives lets the whole secret be masked.
    """
    with _known_lock:
        values = [v.encode() for v in _known]
    longest = 0
    for value in values:
        for length in range(min(len(value) - 1, len(data)), longest, -1):
            if data.endswith(value[:length]):
                longest = length
                break
    return longest


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _known:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.FERNET_KEYS])


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        value = fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "A stored secret cannot be decrypted: FERNET_KEYS no longer holds the key it was "
            "saved with. Put the old key back (after the new one) in FERNET_KEYS."
        ) from exc
    remember_secret(value)
    return value


class SecretInput(forms.PasswordInput):
    """Never renders the stored value back into the page."""

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, render_value=False)


class EncryptedTextField(models.TextField):
    """Text encrypted with Fernet at rest; empty string means "not set"."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return ""
        return decrypt(value)

    def get_prep_value(self, value):
        if not value:
            return ""
        remember_secret(value)
        return encrypt(str(value))

    def formfield(self, **kwargs):
        kwargs.setdefault("widget", SecretInput)
        return super().formfield(**kwargs)


def rotate_all() -> int:
    """Re-encrypt every stored secret with the first key of FERNET_KEYS."""
    from django.apps import apps

    count = 0
    for model in apps.get_models():
        fields = [f for f in model._meta.get_fields() if isinstance(f, EncryptedTextField)]
        for field in fields:
            rows = model._base_manager.exclude(**{field.attname: ""}).values_list(
                "pk", field.attname
            )
            for pk, plain in rows:
                model._base_manager.filter(pk=pk).update(**{field.attname: plain})
                count += 1
    return count
