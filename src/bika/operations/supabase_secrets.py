"""The `env` artifact: environment values from [secrets] (env files, variables), encrypted in
the backup; the manifest keeps an inventory of names and keyed hashes, never a value."""

from __future__ import annotations

import io
import os
import secrets as random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bika.errors import ConfigError
from bika.repository.manifest import SecretEntry, SecretsInventory
from bika.state import state_dir
from bika.stream import Readable
from bika.supabase.secrets import Secret, key_id, parse_env, render_env, value_hash

ENV_ARTIFACT = "env.zst.age"
KEY_FILE = "inventory-key"


@dataclass
class EnvExtra:
    """A backup's `env` artifact (operations.backup.Extra)."""

    secrets: list[Secret]
    unset: list[str]
    key: bytes
    name: str = "env"
    file: str = ENV_ARTIFACT
    content: str = "dotenv"
    warnings: list[str] = field(default_factory=list)

    @contextmanager
    def open(self) -> Iterator[Readable]:
        yield io.BytesIO(render_env(self.secrets).encode())

    def manifest_fields(self) -> dict[str, Any]:
        return {"secrets": inventory(self.secrets, self.unset, self.key)}


def inventory(secrets: Sequence[Secret], unset: Sequence[str], key: bytes) -> SecretsInventory:
    return SecretsInventory(
        key_id=key_id(key),
        entries=[
            SecretEntry(name=s.name, source=s.source, hash=value_hash(key, s.name, s.value))
            for s in secrets
        ],
        unset=list(unset),
    )


def prepare_secrets(
    env_files: Sequence[Path],
    names: Sequence[str],
    key: str | None,
    environ: Mapping[str, str] | None = None,
) -> EnvExtra:
    """Read the values before the backup starts: an env file that cannot be read fails the
    backup (a typo must not silently keep nothing); a variable that is not set is a warning
    and is listed as unset in the inventory, which `bika check` reports."""
    environ = os.environ if environ is None else environ
    found: list[Secret] = []
    for path in env_files:
        try:
            text = path.expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"[secrets] env file {path} does not exist; fix env_files (paths are from the"
                " current directory)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read [secrets] env file {path}: {reason}") from None
        found += parse_env(text, str(path))
    unset = [name for name in names if name not in environ]
    found += [Secret(name, environ[name], "env") for name in names if name in environ]
    extra = EnvExtra(found, unset, inventory_key(key))
    if unset:
        extra.warnings.append(
            f"[secrets] env names not set in this environment, not kept: {', '.join(unset)}"
        )
    return extra


def inventory_key(given: str | None) -> bytes:
    """The key of the inventory's hashes: [secrets] inventory_key when set, else a random key
    made once on this host ($XDG_STATE_HOME/bika/inventory-key, mode 0600). Never anything the
    repository holds: with a key from the repository (its id), anyone who can list the backups
    could test guesses of a short secret against its hash."""
    if given:
        return given.encode()
    path = state_dir() / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read the inventory key {path} ({exc}); remove it to make a new one"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = random.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another bika made it meanwhile
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")
    return key
