"""Settings: command-line flags, then environment, then bika.toml (or --config FILE).

${NAME} in bika.toml is replaced by the environment variable NAME, so secrets stay out of it.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bika.errors import ConfigError

DEFAULT_CONFIG = "bika.toml"

# setting name → environment variables, first match wins
ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "repo": ("BIKA_REPO",),
    "database_url": ("BIKA_DATABASE_URL", "DATABASE_URL"),
    "identity": ("BIKA_IDENTITY",),
    "recipients": ("BIKA_RECIPIENTS",),
    "pg_bin_dir": ("BIKA_PG_BIN_DIR",),
    "compression_level": ("BIKA_COMPRESSION_LEVEL",),
}


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str | None = Field(None, description="repository: a folder (later s3://, gs://, az://)")
    database_url: SecretStr | None = Field(None, description="postgresql://user:pw@host/db")
    identity: Path | None = Field(None, description="age identity file, to read data back")
    recipients: list[str] = Field(default_factory=list, description="age1… public keys")
    pg_bin_dir: str | None = Field(None, description="folder of pg_dump/pg_restore to use")
    compression_level: int = Field(3, ge=1, le=22, description="zstd level")
    compression_threads: int = Field(0, ge=0, description="zstd threads, 0 = one per core")

    @field_validator("recipients", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v for v in re.split(r"[\s,]+", value) if v]
        return value

    def require_repo(self) -> str:
        if not self.repo:
            raise ConfigError(
                "no repository given; pass --repo PATH, set BIKA_REPO, or put repo = … in bika.toml"
            )
        return self.repo

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigError(
                "no database given; pass --db postgresql://…, set BIKA_DATABASE_URL or"
                ' DATABASE_URL, or put database_url = "${DATABASE_URL}" in bika.toml'
            )
        return self.database_url.get_secret_value()

    def require_identity(self) -> Path:
        if self.identity is None:
            raise ConfigError(
                "reading backup data needs the private key; pass --identity FILE or set"
                " BIKA_IDENTITY"
            )
        return self.identity


def load_settings(config: Path | None = None, **flags: Any) -> Settings:
    """Merge flags (None = not given) over the environment over the config file."""
    values: dict[str, Any] = _read_file(config)
    for name, variables in ENVIRONMENT.items():
        for variable in variables:
            if os.environ.get(variable):
                values[name] = os.environ[variable]
                break
    values.update({k: v for k, v in flags.items() if v is not None and v != []})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        raise ConfigError(f"setting {where!r}: {error['msg']}") from None


def _read_file(config: Path | None) -> dict[str, Any]:
    path = config or Path(DEFAULT_CONFIG)
    if not path.exists():
        if config is not None:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}; fix the file or pass --config"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    unknown = set(data) - set(Settings.model_fields)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {sorted(unknown)[0]!r}; known settings are "
            + ", ".join(sorted(Settings.model_fields))
        )
    return {key: _interpolate(value, path) for key, value in data.items()}


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(value: Any, path: Path) -> Any:
    if isinstance(value, list):
        return [_interpolate(v, path) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{path} refers to ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _VARIABLE.sub(replace, value)
