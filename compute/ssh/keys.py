"""SSH keys: reading the private keys users paste or upload, and making new pairs.

Secrets never appear in an error message or a repr: messages are shown to users
and end up in logs.
"""

from __future__ import annotations

import io

import paramiko
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


class SshError(Exception):
    """A failure the user can act on; `code` is stable, `message` says what to do."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def parse_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """Load an ed25519, RSA or ECDSA private key in OpenSSH or PEM (traditional or PKCS8) format."""
    # Pasted keys often carry Windows line ends or indentation from an editor.
    data = "\n".join(line.strip() for line in text.strip().splitlines()).encode()
    if data.startswith(b"PuTTY-User-Key-File"):
        raise SshError(
            "bad_key",
            "This is a PuTTY key (.ppk): export it in OpenSSH format with PuTTYgen "
            "(Conversions > Export OpenSSH key) and paste that file.",
        )
    if data.startswith((b"ssh-", b"ecdsa-")):
        raise SshError(
            "bad_key",
            "This is a public key: paste the private key instead "
            "(the file without .pub, e.g. ~/.ssh/id_ed25519).",
        )
    if b"-----BEGIN" not in data or b"PRIVATE KEY-----" not in data:
        raise SshError(
            "bad_key",
            "This does not look like a private key: paste the whole file "
            "including the BEGIN/END lines.",
        )
    load = (
        serialization.load_ssh_private_key
        if b"BEGIN OPENSSH PRIVATE KEY" in data
        else serialization.load_pem_private_key
    )
    # `from None` everywhere below: the chained cryptography errors add
    # nothing for the user and must not drag key material into tracebacks.
    try:
        loaded = load(data, None)
    except TypeError:
        # cryptography's documented signal for "encrypted, but no password".
        if not passphrase:
            raise SshError(
                "bad_passphrase",
                "This key is protected by a passphrase: enter it in the passphrase field.",
            ) from None
        try:
            loaded = load(data, passphrase.encode())
        except ValueError:
            raise SshError(
                "bad_passphrase",
                "The passphrase does not unlock this key: check it and try again.",
            ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise SshError(
            "bad_key",
            "This does not look like a private key: paste the whole file "
            "including the BEGIN/END lines.",
        ) from None

    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        key_class = paramiko.Ed25519Key
    elif isinstance(loaded, rsa.RSAPrivateKey):
        key_class = paramiko.RSAKey
    elif isinstance(loaded, ec.EllipticCurvePrivateKey):
        key_class = paramiko.ECDSAKey
    else:
        raise SshError(
            "bad_key",
            f"Unsupported key type {type(loaded).__name__}: use an ed25519, RSA or ECDSA key.",
        )
    # paramiko reads every key type from unencrypted OpenSSH text, so
    # re-serialising once avoids running the (slow, bcrypt) key derivation twice.
    openssh_text = loaded.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return key_class.from_private_key(io.StringIO(openssh_text))


def generate_key_pair(comment: str = "trainyard") -> tuple[str, str]:
    """Return (private key in OpenSSH format, public key line for authorized_keys)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private_text = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private_text, f"{public.decode()} {comment}"
