"""The few settings `wal push`/`wal fetch` read, without pydantic: the same file (config_files),
the same variables (BIKA_REPO, BIKA_IDENTITY, BIKA_STORAGE__*), the same ${NAME} expansion."""

from __future__ import annotations

import os

from bika.config_files import find_config_file
from bika.errors import ConfigError
from bika.wal.plain_toml import read_plain_toml

# no dataclasses, re or typing at import: every archive_command call pays for each import
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# the [storage] settings the lean S3 backend understands; the rest are for the full CLI
STORAGE_KEYS = (
    "endpoint",
    "region",
    "path_style",
    "allow_http",
    "access_key_id",
    "secret_access_key",
    "session_token",
    "sse",
    "sse_kms_key_id",
    "connect_timeout",
    "timeout",
    "max_retries",
)
_VARIABLE = r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}"


class WalSettings:
    __slots__ = ("config_file", "identity", "repo", "storage")

    def __init__(
        self,
        repo: str | None = None,
        identity: str | None = None,
        storage: dict[str, Any] | None = None,
        config_file: str | None = None,
    ) -> None:
        self.repo = repo
        self.identity = identity
        self.storage: dict[str, Any] = storage or {}
        self.config_file = config_file

    def require_repo(self) -> str:
        if not self.repo:
            raise ConfigError(
                "no repository given; pass --repo PATH, set BIKA_REPO, or put repo = … in"
                " bika.toml (readable by the server's OS user)"
            )
        return self.repo

    def require_identity(self) -> str:
        if not self.identity:
            raise ConfigError(
                "wal fetch needs the private key; pass --identity FILE or set BIKA_IDENTITY"
            )
        return self.identity


def load(
    *,
    config: str | None = None,
    repo: str | None = None,
    identity: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> WalSettings:
    """Flags over variables over the file, as config.load_settings merges them."""
    environ = os.environ if environ is None else environ
    path = find_config_file(config, environ)
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_toml(path)

    def pick(name: str, variable: str, flag: str | None, table: dict[str, Any]) -> Any:
        if flag:
            return flag
        if environ.get(variable):
            return environ[variable]
        if name in table:
            return _expand(table[name], name, path, environ)
        return None

    storage_table = data.get("storage")
    storage_table = storage_table if isinstance(storage_table, dict) else {}
    storage = {}
    for key in STORAGE_KEYS:
        value = pick(key, f"BIKA_STORAGE__{key.upper()}", None, storage_table)
        if value is not None:
            storage[key] = value
    return WalSettings(
        repo=pick("repo", "BIKA_REPO", repo, data),
        identity=pick("identity", "BIKA_IDENTITY", identity, data),
        storage=storage,
        config_file=path,
    )


def from_options(options: Mapping[str, str | bool]) -> WalSettings:
    """The settings for the hand-parsed options of `wal push`/`wal fetch`."""
    config = options.get("--config")
    return load(
        config=str(config) if config else None,
        repo=str(options["--repo"]) if "--repo" in options else None,
        identity=str(options["--identity"]) if "--identity" in options else None,
    )


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {reason}") from None
    plain = read_plain_toml(text)
    if plain is not None:
        return plain
    import tomllib  # what the plain reader does not take: importing it costs more than a push

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the file") from None


def _expand(value: Any, name: str, path: str | None, environ: Mapping[str, str]) -> Any:
    if not isinstance(value, str) or "${" not in value:
        return value
    import re

    for variable in re.findall(_VARIABLE, value):
        if variable not in environ:
            raise ConfigError(
                f"setting {name!r} in {path} refers to ${{{variable}}}, which is not set in the"
                f" environment of the server's OS user; set {variable} or change the setting"
            )
    return re.sub(_VARIABLE, lambda m: environ[m.group(1)], value)


def as_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")
