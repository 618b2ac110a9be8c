"""Settings: command-line flags, then environment, then bika.toml (or --config FILE).

${NAME} in bika.toml is replaced by the environment variable NAME, so secrets stay out of it.

The [storage] table says how to reach an off-site repository; what it leaves unset falls back to
each cloud's own variables and credential chain (AWS_*, AZURE_STORAGE_*, GOOGLE_*), read by the
storage backends themselves, so a more specific bika.toml beats a machine-wide default.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bika.errors import ConfigError
from bika.repository.manifest import KINDS
from bika.retention import DEFAULT_RULES, Policy, Rule
from bika.storage import StorageSettings
from bika.units import parse_duration

DEFAULT_CONFIG = "bika.toml"

# setting name (dotted for tables) → environment variables, first match wins
ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "repo": ("BIKA_REPO",),
    "database_url": ("BIKA_DATABASE_URL", "DATABASE_URL"),
    "identity": ("BIKA_IDENTITY",),
    "recipients": ("BIKA_RECIPIENTS",),
    "pg_bin_dir": ("BIKA_PG_BIN_DIR",),
    "compression_level": ("BIKA_COMPRESSION_LEVEL",),
    "copy.to": ("BIKA_COPY_TO",),
}

_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class StorageConfig(BaseModel):
    """The [storage] table: how to reach an s3://, gs:// or az:// repository. Secrets are
    SecretStr, so printing settings never shows them."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(
        default=None, description="S3-compatible (B2, R2, MinIO, Wasabi), Azure or GCS endpoint URL"
    )
    region: str | None = Field(default=None, description="S3 region")
    path_style: bool | None = Field(default=None, description="S3 path-style URLs (MinIO)")
    allow_http: bool | None = Field(default=None, description="allow a plain http:// endpoint")
    profile: str | None = Field(default=None, description="AWS profile")
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    sse: str | None = Field(
        default=None, description="S3 server-side encryption: SSE-S3 or SSE-KMS"
    )
    sse_kms_key_id: str | None = Field(
        default=None, description="KMS key id or ARN (implies SSE-KMS)"
    )
    azure_account: str | None = None
    azure_key: SecretStr | None = None
    azure_sas: SecretStr | None = None
    azure_connection_string: SecretStr | None = None
    gcs_credentials_file: str | None = Field(default=None, description="service-account key file")
    gcs_project: str | None = None
    part_size: int = Field(default=8 * 1024**2, ge=256 * 1024, description="bytes, or '16MiB'")
    upload_concurrency: int = Field(default=4, ge=1, le=64)
    max_retries: int = Field(default=10, ge=0)
    retry_timeout: float = Field(default=180.0, gt=0, description="seconds a request is retried")
    connect_timeout: float = Field(default=10.0, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="seconds one request may take")
    classes: dict[str, str] = Field(
        default_factory=dict, description="backup kind → storage class of its artifacts"
    )

    @field_validator("part_size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(f"{value!r} is not a size; write bytes or e.g. '16MiB'")
        unit = (match.group(2) or "")[:1].upper()
        return int(match.group(1)) * _UNITS[unit]

    @field_validator("classes")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, storage_class in value.items():
            if kind not in KINDS:
                raise ValueError(f"{kind!r} is not a backup kind ({', '.join(KINDS)})")
            if not storage_class.strip():
                raise ValueError(f"the storage class for {kind!r} is empty")
        return value

    def storage_settings(self) -> StorageSettings:
        """What open_storage takes; None fields fall back to the cloud's own variables."""

        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value is not None else None

        return StorageSettings(
            endpoint=self.endpoint,
            region=self.region,
            path_style=self.path_style,
            allow_http=self.allow_http,
            profile=self.profile,
            access_key_id=secret(self.access_key_id),
            secret_access_key=secret(self.secret_access_key),
            session_token=secret(self.session_token),
            sse=self.sse,
            sse_kms_key_id=self.sse_kms_key_id,
            azure_account=self.azure_account,
            azure_key=secret(self.azure_key),
            azure_sas=secret(self.azure_sas),
            azure_connection_string=secret(self.azure_connection_string),
            gcs_credentials_file=self.gcs_credentials_file,
            gcs_project=self.gcs_project,
            part_size=self.part_size,
            upload_concurrency=self.upload_concurrency,
            max_retries=self.max_retries,
            retry_timeout=self.retry_timeout,
            connect_timeout=self.connect_timeout,
            timeout=self.timeout,
        )

    def storage_class(self, kind: str) -> str | None:
        return self.classes.get(kind)


class CopyConfig(BaseModel):
    """The [copy] table: the second repository `bika copy` fills (the 3-2-1 rule)."""

    model_config = ConfigDict(extra="forbid")

    to: str | None = Field(default=None, description="destination repository")
    storage: StorageConfig | None = Field(
        default=None, description="how to reach it; default: the [storage] table"
    )


class RuleConfig(BaseModel):
    """One [retention.KIND] table; given, it replaces that kind's default rule."""

    model_config = ConfigDict(extra="forbid")

    keep_days: int | None = Field(default=None, ge=0, description="keep what is younger")
    keep_last: int | None = Field(default=None, ge=0, description="keep the newest N")


def _default_rule(kind: str) -> Any:
    rule = DEFAULT_RULES[kind]
    return Field(default_factory=lambda: RuleConfig(keep_days=rule.keep_days))


class RetentionConfig(BaseModel):
    """The [retention] table: a rule per kind (and per role: weekly, monthly) for bika prune;
    the procedure's numbers by default."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    daily: RuleConfig = _default_rule("daily")
    weekly: RuleConfig = _default_rule("weekly")
    monthly: RuleConfig = _default_rule("monthly")
    pre_migration: RuleConfig = Field(
        default_factory=lambda: RuleConfig(keep_days=DEFAULT_RULES["pre-migration"].keep_days),
        alias="pre-migration",
    )
    manual: RuleConfig = Field(default_factory=RuleConfig, description="kept until deleted")
    keep_within: str | None = Field(default=None, description="keep everything younger: 30d")

    @field_validator("keep_within")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_duration(value)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    def policy(self) -> Policy:
        rules = {
            kind: Rule(keep_days=rule.keep_days, keep_last=rule.keep_last)
            for kind, rule in (
                ("daily", self.daily),
                ("weekly", self.weekly),
                ("monthly", self.monthly),
                ("pre-migration", self.pre_migration),
                ("manual", self.manual),
            )
        }
        within = parse_duration(self.keep_within) if self.keep_within else None
        return Policy(rules, keep_within=within)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    repo: str | None = Field(
        None, description="repository: a folder, s3://, gs://, az:// or azure:// URL"
    )
    database_url: SecretStr | None = Field(None, description="postgresql://user:pw@host/db")
    identity: Path | None = Field(None, description="age identity file, to read data back")
    recipients: list[str] = Field(default_factory=list, description="age1… public keys")
    pg_bin_dir: str | None = Field(None, description="folder of pg_dump/pg_restore to use")
    compression_level: int = Field(3, ge=1, le=22, description="zstd level")
    compression_threads: int = Field(0, ge=0, description="zstd threads, 0 = one per core")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    copy_: CopyConfig = Field(default_factory=CopyConfig, alias="copy")
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

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

    def require_copy_to(self) -> str:
        if not self.copy_.to:
            raise ConfigError(
                "no destination given; pass --to REPO, set BIKA_COPY_TO, or put to = … in the"
                " [copy] table of bika.toml"
            )
        return self.copy_.to

    @property
    def copy_storage(self) -> StorageConfig:
        """The destination's [copy.storage], else the same [storage] as the repository."""
        return self.copy_.storage or self.storage

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
                _set(values, name, os.environ[variable])
                break
    for name, value in flags.items():
        if value is not None and value != []:
            _set(values, name, value)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        if error["type"] == "extra_forbidden":
            raise ConfigError(f"unknown setting {where!r}; check its spelling") from None
        raise ConfigError(f"setting {where!r}: {error['msg']}") from None


def _set(values: dict[str, Any], name: str, value: Any) -> None:
    """Set a dotted name ("copy.to") in nested tables, making the tables on the way."""
    *tables, last = name.split(".")
    for table in tables:
        inner = values.get(table)
        if not isinstance(inner, dict):
            inner = {}
            values[table] = inner
        values = inner
    values[last] = value


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
    known = {field.alias or name for name, field in Settings.model_fields.items()}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {sorted(unknown)[0]!r}; known settings are "
            + ", ".join(sorted(known))
        )
    return {key: _interpolate(value, path) for key, value in data.items()}


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(value: Any, path: Path) -> Any:
    if isinstance(value, list):
        return [_interpolate(v, path) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, path) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{path} refers to ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _VARIABLE.sub(replace, value)
