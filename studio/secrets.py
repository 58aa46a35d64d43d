"""Secrets at rest and in text: an encrypted model field and redaction of known values.

Every value decrypted in this process is remembered (in memory only), so the
server's log records mask it wherever it appears. Text users see is masked with
the secrets of their own workspace only (`redact` with those), so whether a
string gets masked says nothing about another workspace's secrets.
"""

import logging
import threading
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django import forms
from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Expression

MASK = "******"
_known: set[str] = set()
_known_lock = threading.Lock()
# Short values would mask innocent text (a password "a" would eat every "a").
MIN_REDACT_LENGTH = 4


def maskable(value: str | None) -> set[str]:
    """The strings to mask for one secret: the value and each long line of it."""
    if not value or len(value) < MIN_REDACT_LENGTH:
        return set()
    return {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= 16}


def remember_secret(value: str | None) -> None:
    values = maskable(value)
    if values:
        with _known_lock:
            _known.update(values)


def redact(text: str, secrets: Iterable[str]) -> str:
    """Mask each of `secrets` (and each long line of one) in `text`, and nothing else."""
    values: set[str] = set()
    for secret in secrets:
        values |= maskable(secret)
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def redact_bytes(data: bytes, secrets: set[str] | frozenset[str]) -> bytes:
    """Mask each of `secrets` (from `maskable`) in `data`, and nothing else."""
    for value in sorted(secrets, key=len, reverse=True):
        data = data.replace(value.encode(), MASK.encode())
    return data


def redact_known(text: str) -> str:
    """Mask every secret this process has seen: for the server's own log only."""
    with _known_lock:
        values = set(_known)
    return redact(text, values)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _known:
            record.msg = redact_known(record.getMessage())
            record.args = None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact_known(logging.Formatter().formatException(record.exc_info))
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

    def __init__(self, attrs: dict[str, Any] | None = None):
        super().__init__(attrs=attrs, render_value=False)


class EncryptedTextField(models.TextField):
    """Text encrypted with Fernet at rest; empty string means "not set"."""

    def from_db_value(
        self, value: str | None, expression: Expression, connection: BaseDatabaseWrapper
    ) -> str:
        if not value:
            return ""
        return decrypt(value)

    def get_prep_value(self, value: Any) -> str:
        if not value:
            return ""
        remember_secret(value)
        return encrypt(str(value))

    def formfield(
        self,
        form_class: type[forms.Field] | None = None,
        choices_form_class: type[forms.ChoiceField] | None = None,
        **kwargs: Any,
    ) -> forms.Field | None:
        kwargs.setdefault("widget", SecretInput)
        return super().formfield(
            form_class=form_class, choices_form_class=choices_form_class, **kwargs
        )


def rotate_all() -> int:
    """Re-encrypt every stored secret with the first key of FERNET_KEYS."""
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
