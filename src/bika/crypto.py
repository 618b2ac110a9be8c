"""age keys: generating identities, reading identity files, parsing recipients.

Backup hosts need only recipients (public keys); the identity is needed to read data back.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyrage

from bika.errors import IdentityError, KeySettingError

Identity = pyrage.x25519.Identity
Recipient = pyrage.x25519.Recipient


def generate_identity(out: Path, passphrase: str | None = None) -> str:
    """Write a new age identity to out (mode 0600, refusing to overwrite); return its recipient.

    With a passphrase the file is the identity encrypted with it (`age -p`, scrypt), which
    load_identities() and `age -d` open with the same passphrase."""
    identity = Identity.generate()
    public = str(identity.to_public())
    text = (
        f"# created: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"# public key: {public}\n"
        f"{identity}\n"
    ).encode()
    if passphrase is not None:
        text = bytes(pyrage.passphrase.encrypt(text, passphrase))
    write_key_file(out, text)
    return public


def write_key_file(out: Path, data: bytes) -> None:
    """A new private key file, mode 0600 whatever the umask; an existing file is never
    overwritten."""
    out = out.expanduser()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise IdentityError(f"{out} already exists; bika never overwrites a key file") from exc
    except OSError as exc:
        raise IdentityError(f"cannot write key file {out}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(data)


def fingerprint(recipient: str) -> str:
    """A short name for a public key: the first 12 hex digits of its sha256 (what
    `printf %s "$(age-keygen -y KEY)" | sha256sum | cut -c1-12` prints for its identity; the
    runbook shows the same)."""
    return hashlib.sha256(recipient.strip().encode()).hexdigest()[:12]


# An age header ends with its MAC line ("--- …\n"); the payload starts with a 16-byte nonce,
# which age reads before it tries any key.
HEADER_PROBE_SIZE = 4096
_NONCE = 16


def header_probe(head: bytes) -> bytes | None:
    """The age header and payload nonce at the start of `head` (an artifact's first bytes),
    or None when `head` holds no complete header."""
    if not head.startswith(b"age-encryption.org/v1\n"):
        return None
    end = head.find(b"\n---")
    if end < 0:
        return None
    line_end = head.find(b"\n", end + 1)
    if line_end < 0 or len(head) < line_end + 1 + _NONCE:
        return None
    return head[: line_end + 1 + _NONCE]


def stanza_count(probe: bytes) -> int:
    """How many X25519 recipient stanzas a header has (one per recipient it was sealed to)."""
    return probe.count(b"\n-> X25519 ")


def opens(probe: bytes, identities: list[object]) -> bool:
    """Whether one of the identities unwraps the file key of this header (header_probe())."""
    try:
        pyrage.decrypt(probe, identities)
    except pyrage.DecryptError as exc:
        return "No matching keys" not in str(exc)
    except Exception:
        return True  # the key fits: what failed is the payload this probe leaves out
    return True


PASSPHRASE_VARIABLE = "BIKA_IDENTITY_PASSPHRASE"
_ENCRYPTED = (b"age-encryption.org/v1\n", b"-----BEGIN AGE ENCRYPTED FILE-----")


def load_identities(path: Path) -> list[object]:
    """Every AGE-SECRET-KEY line of an age identity file (as written by age-keygen or bika),
    also of one protected by a passphrase (`age -p`, binary or armored): the passphrase from
    BIKA_IDENTITY_PASSPHRASE, or asked for on the terminal."""
    path = path.expanduser()
    try:
        data = path.read_bytes()
        if data.lstrip().startswith(_ENCRYPTED):
            data = _unlock(path, data)
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise KeySettingError(
            f"{path} is not an age identity file (it is not text); pass the key file from"
            " 'bika key generate' or age-keygen"
        ) from None
    except FileNotFoundError as exc:
        raise KeySettingError(
            f"identity file {path} does not exist; pass --identity with the key from"
            " 'bika key generate'"
        ) from exc
    except OSError as exc:
        raise IdentityError(f"cannot read identity file {path}: {exc.strerror}") from exc
    identities: list[object] = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(Identity.from_str(line))
        except Exception as exc:
            raise KeySettingError(
                f"{path} line {number} is not an age identity (AGE-SECRET-KEY-1…)"
            ) from exc
    if not identities:
        raise KeySettingError(f"{path} holds no age identity (AGE-SECRET-KEY-1…)")
    return identities


def _unlock(path: Path, data: bytes) -> bytes:
    passphrase = os.environ.get(PASSPHRASE_VARIABLE)
    if passphrase is None:
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise IdentityError(
                f"{path} is protected by a passphrase; set {PASSPHRASE_VARIABLE}, or run bika"
                " on a terminal to be asked for it"
            )
        passphrase = getpass.getpass(f"passphrase for {path}: ")
    try:
        return bytes(pyrage.passphrase.decrypt(data.lstrip(), passphrase))
    except pyrage.DecryptError:
        raise IdentityError(
            f"cannot unlock {path}: wrong passphrase (or the file is not age -p output)"
        ) from None


def recipient_strings(values: list[str]) -> list[str]:
    """age1… strings, given directly or as files holding them (one per line)."""
    return [item for value in values for item in _expand(value)]


def parse_recipients(values: list[str]) -> list[object]:
    """Recipients given as age1… strings (or files holding them, one per line)."""
    recipients: list[object] = []
    for item in recipient_strings(values):
        if item.upper().startswith("AGE-SECRET-KEY-"):
            # never echoed: it is the private key
            raise KeySettingError(
                "a private key (AGE-SECRET-KEY-…) was given as a recipient; give its public"
                " key age1… instead ('age-keygen -y KEYFILE' prints it), and keep the private"
                " key off backup hosts"
            )
        try:
            recipients.append(Recipient.from_str(item))
        except Exception as exc:
            raise KeySettingError(
                f"{item[:20]!r} is not an age recipient; expected a public key age1…"
            ) from exc
    return recipients


def _expand(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("age1"):
        return [value]
    path = Path(value).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
            raise KeySettingError(
                f"cannot read recipients file {path}: {reason}; give age1… public keys"
            ) from None
        return [
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
        ]
    return [value]
