"""Detached signatures: <key>.sig next to each manifest, drill record and event, and the trust
rule that decides whether a reader may use what it read (docs/FORMAT.md, "Signatures").

Hashes in a manifest prove damage; a signature by a pinned key proves who wrote it, so that
someone who can write to the bucket cannot substitute a backup.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bika import signing
from bika.signing import SigningKey

SIG_SUFFIX = ".sig"
SIGNATURE_FORMAT = "bika-signature"
SIGNATURE_VERSION = 1
_CONTEXT = b"bika-signature-v1\n"

Status = Literal["signed", "unsigned", "untrusted", "invalid"]


def signature_key(key: str) -> str:
    return key + SIG_SUFFIX


def signed_message(key: str, data: bytes) -> bytes:
    """What is signed: a context string, the object's key (so a signed object cannot be moved
    to another name) and the sha256 of its exact bytes."""
    return _CONTEXT + key.encode() + b"\n" + signing.sha256_hex(data).encode()


def signature_object(
    signer: SigningKey, key: str, data: bytes, previous: bytes | None = None
) -> bytes:
    """The bytes of <key>.sig for the object `data` stored at `key`; with `previous`, the
    signature also covers those bytes (the object as it is while it is being rewritten)."""

    def sign(content: bytes) -> str:
        return base64.b64encode(signer.sign(signed_message(key, content))).decode()

    document: dict[str, object] = {
        "format": SIGNATURE_FORMAT,
        "version": SIGNATURE_VERSION,
        "signer": signer.public,
        "key": key,
        "sha256": signing.sha256_hex(data),
        "signature": sign(data),
    }
    if previous is not None:
        document["previous"] = [
            {"sha256": signing.sha256_hex(previous), "signature": sign(previous)}
        ]
    return (json.dumps(document, indent=2) + "\n").encode()


@dataclass(frozen=True)
class Verdict:
    """What a signature says about one object."""

    status: Status
    signer: str | None = None
    """The public key the signature names (valid or not), or None when unsigned."""

    def reason(self, what: str) -> str:
        """One line saying why `what` (e.g. "its manifest") cannot be trusted."""
        if self.status == "unsigned":
            return (
                f"{what} is not signed, and this host accepts only signed ones; if it was made"
                " before signing was set up, pass --trust-unsigned"
            )
        if self.status == "untrusted":
            shown = signing.fingerprint(self.signer or "")
            return (
                f"{what} is signed by {shown}…, a key this host does not trust: it may be a"
                " substitute; pin the key (trusted_signers) only if you know it is your backup"
                " host's"
            )
        return (
            f"{what} does not match its signature: it was edited after it was signed, or its"
            " signature replaced; do not use it"
        )


def judge(key: str, data: bytes, sig: bytes | None, accepted: frozenset[str]) -> Verdict:
    """The verdict on the object `data` at `key` with signature object `sig` (None: absent)."""
    if sig is None:
        return Verdict("unsigned")
    try:
        document = json.loads(sig)
        signer = str(document["signer"])
        signatures = [document["signature"]]
        signatures += [entry["signature"] for entry in document.get("previous", [])]
        raws = [base64.b64decode(str(s), validate=True) for s in signatures]
        named = document.get("key")
    except (ValueError, KeyError, TypeError, binascii.Error):
        return Verdict("invalid")
    message = signed_message(key, data)
    if (
        document.get("format") != SIGNATURE_FORMAT
        or named != key
        or not any(signing.verify(signer, raw, message) for raw in raws)
    ):
        return Verdict("invalid", signer)
    return Verdict("signed" if signer in accepted else "untrusted", signer)


@dataclass
class Trust:
    """How a repository's reader judges signatures, and what its writer signs with.

    `pinned`: the public keys this host trusts (trusted_signers); only what they signed is
    used, unsigned objects also with `trust_unsigned`. None pinned: the signers bika.json lists
    are checked, which catches a signed object edited or re-signed by another key, though not
    someone who rewrites bika.json too; unsigned objects are used as before signing existed.
    A signature that does not match is always refused."""

    pinned: frozenset[str] = frozenset()
    trust_unsigned: bool = False
    signing_key: Path | None = None
    _signer: SigningKey | None = field(default=None, repr=False)

    def signer(self) -> SigningKey | None:
        """The signing key, read on first use (only writers need it)."""
        if self._signer is None and self.signing_key is not None:
            self._signer = signing.load_signing_key(self.signing_key)
        return self._signer

    def accepts(self, verdict: Verdict, signers_known: bool) -> bool:
        """Whether an object with this verdict may be used; `signers_known`: some key is
        accepted (pinned here, or listed in bika.json)."""
        if verdict.status == "signed":
            return True
        if verdict.status == "invalid":
            return False
        if verdict.status == "unsigned":
            return not self.pinned or self.trust_unsigned
        return not signers_known
