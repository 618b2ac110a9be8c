"""ed25519 signing keys: generating and reading the backup host's key, and its public text form.

The backup host signs what it writes with the private key; a restoring host pins the public
key (`ed25519:` and 43 characters of base64url) and accepts only what that key signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bika.errors import IdentityError, KeySettingError

# cryptography costs ~100 ms to import: only commands that sign or check a signature pay it
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

PUBLIC_PREFIX = "ed25519:"
SECRET_PREFIX = "BIKA-SIGNING-KEY-"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_text(key: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return PUBLIC_PREFIX + _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def fingerprint(public: str) -> str:
    """A short name for a public key, for lists and messages: its first 16 characters."""
    return public[: len(PUBLIC_PREFIX) + 8]


def parse_public(text: str) -> Ed25519PublicKey:
    """An `ed25519:…` public key; KeySettingError (exit 2) for anything else."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = text.strip()
    if text.startswith(SECRET_PREFIX):
        # never echoed: it is the private key
        raise KeySettingError(
            "a private signing key (BIKA-SIGNING-KEY-…) was given as a trusted signer; pin its"
            " public key ed25519:… instead (the second line of the key file)"
        )
    try:
        if not text.startswith(PUBLIC_PREFIX):
            raise ValueError
        raw = _unb64(text[len(PUBLIC_PREFIX) :])
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, binascii.Error):
        raise KeySettingError(
            f"{text[:20]!r} is not a signing public key; expected ed25519:… as printed by"
            " 'bika key generate --signing'"
        ) from None


def verify(public: str, signature: bytes, message: bytes) -> bool:
    """Whether `signature` is public's signature of message (False for a malformed key)."""
    from cryptography.exceptions import InvalidSignature

    try:
        parse_public(public).verify(signature, message)
    except (InvalidSignature, KeySettingError):
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    """The backup host's private signing key, read from its file."""

    private: Ed25519PrivateKey
    path: Path

    @property
    def public(self) -> str:
        return public_text(self.private.public_key())

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def generate_signing_key(out: Path) -> str:
    """Write a new signing key to out (mode 0600, never overwriting); return its public text."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from bika.crypto import write_key_file

    private = Ed25519PrivateKey.generate()
    public = public_text(private.public_key())
    seed = private.private_bytes_raw()
    created = datetime.now(UTC).isoformat(timespec="seconds")
    text = (
        f"# bika signing key (ed25519), created: {created}\n"
        f"# public key: {public}\n"
        f"{SECRET_PREFIX}{_b64(seed)}\n"
    )
    write_key_file(out, text.encode())
    return public


def load_signing_key(path: Path) -> SigningKey:
    """The key of a file written by generate_signing_key."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = path.expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise KeySettingError(
            f"signing key file {path} does not exist; create one with 'bika key generate"
            " --signing --out FILE' or fix signing_key"
        ) from None
    except UnicodeDecodeError:
        raise KeySettingError(f"{path} is not a bika signing key file (not text)") from None
    except OSError as exc:
        raise IdentityError(f"cannot read signing key file {path}: {exc.strerror}") from None
    for line in lines:
        line = line.strip()
        if line.startswith(SECRET_PREFIX):
            try:
                seed = _unb64(line[len(SECRET_PREFIX) :])
                if len(seed) != 32:
                    raise ValueError
                return SigningKey(Ed25519PrivateKey.from_private_bytes(seed), path)
            except (ValueError, binascii.Error):
                break
    raise KeySettingError(
        f"{path} holds no bika signing key (BIKA-SIGNING-KEY-…); create one with 'bika key"
        " generate --signing --out FILE'"
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
