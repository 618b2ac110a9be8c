"""A repository's recipients (`bika key add/remove/list`) and which backups an identity opens
(`bika key check`), read from each artifact's age header alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bika.crypto import HEADER_PROBE_SIZE, fingerprint, header_probe, opens, parse_recipients
from bika.errors import BikaError, ConfigError, KeySettingError
from bika.repository import Repository
from bika.storage import read_range


@dataclass(frozen=True)
class RecipientEntry:
    recipient: str
    fingerprint: str


def recipients(repo: Repository) -> list[RecipientEntry]:
    return [RecipientEntry(r, fingerprint(r)) for r in repo.recipients]


def add_recipient(repo: Repository, recipient: str) -> bool:
    """Add a recipient for future backups; False when it is one already."""
    value = _one(recipient)
    if value in repo.recipients:
        return False
    repo.set_recipients([*repo.recipients, value])
    return True


def remove_recipient(repo: Repository, recipient: str) -> str:
    """Remove a recipient (given whole or by its fingerprint); return the one removed."""
    wanted = recipient.strip()
    matches = [r for r in repo.recipients if wanted in (r, fingerprint(r))]
    if not matches:
        raise ConfigError(
            f"{wanted[:24]!r} is not a recipient of {repo.url}; 'bika key list' shows them"
        )
    if len(repo.recipients) == 1:
        raise ConfigError(
            f"{repo.url} has no other recipient: removing its last one would leave new backups"
            " unreadable; 'bika key add' the new one first"
        )
    repo.set_recipients([r for r in repo.recipients if r != matches[0]])
    return matches[0]


def _one(recipient: str) -> str:
    value = recipient.strip()
    if not value.startswith("age1") and not value.upper().startswith("AGE-SECRET-KEY-"):
        raise KeySettingError(
            f"{value[:20]!r} is not an age recipient; expected a public key age1…"
        )
    parse_recipients([value])  # refuses a private key without echoing it
    return value


@dataclass
class KeyCheck:
    """What one identity can do with one backup: open every artifact, some, or none."""

    backup_id: str
    started_at: str
    opens: list[str] = field(default_factory=list)
    fails: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Artifacts whose header could not be read (missing, damaged)."""

    @property
    def ok(self) -> bool:
        return not self.fails and not self.problems


def check_identity(repo: Repository, identities: list[object]) -> list[KeyCheck]:
    """For every backup, which of its artifacts the identities decrypt; only the first
    bytes of each artifact (its age header) are read."""
    checks: list[KeyCheck] = []
    manifests, damaged = repo.scan()
    for manifest in manifests:
        check = KeyCheck(manifest.id, manifest.started_at.isoformat())
        for name, artifact in sorted(manifest.artifacts.items()):
            try:
                head = read_range(repo.storage, artifact.key, 0, HEADER_PROBE_SIZE)
                probe = header_probe(head)
            except BikaError as exc:
                check.problems.append(f"{name}: {exc}")
                continue
            if probe is None:
                check.problems.append(f"{name}: {artifact.key} holds no age header")
            elif opens(probe, identities):
                check.opens.append(name)
            else:
                check.fails.append(name)
        checks.append(check)
    for bad in damaged:
        checks.append(KeyCheck(bad.backup_id, "", problems=[f"manifest: {bad.reason}"]))
    return checks


def readable_by(recipient: str, manifest_recipients: list[str] | None) -> bool | None:
    """Whether a backup encrypted to manifest_recipients is readable by recipient's identity
    (None: the manifest predates the recipients field, so it cannot say)."""
    if manifest_recipients is None:
        return None
    return recipient.strip() in manifest_recipients
