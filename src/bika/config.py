"""Settings: command-line flags, then environment variables, then one bika.toml.

The file is --config FILE, else $BIKA_CONFIG, else the first of ./bika.toml,
$XDG_CONFIG_HOME/bika/bika.toml (~/.config/bika/bika.toml) and /etc/bika/bika.toml that exists.
Every setting is also a variable: BIKA_ and its name in capitals, a table's settings joined by
two underscores (BIKA_STORAGE__REGION, BIKA_COPY__STORAGE__ENDPOINT; a table of values such as
BIKA_STORAGE__CLASSES is JSON). DATABASE_URL and BIKA_COPY_TO are kept as older names.

${NAME} in bika.toml is replaced by the environment variable NAME, so secrets stay out of it. An
unset NAME fails only the command that reads that setting, naming both.

The [storage] table says how to reach an off-site repository; what it leaves unset falls back to
each cloud's own variables and credential chain (AWS_*, AZURE_STORAGE_*, GOOGLE_*), read by the
storage backends themselves, so a more specific bika.toml beats a machine-wide default.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)

# config_candidates is re-exported: the CLI names the places it looked through config
from bika.config_files import config_candidates as config_candidates
from bika.config_files import find_config as find_config
from bika.errors import ConfigError, KeySettingError
from bika.monitor import Thresholds
from bika.postgres.connection import ConnInfo, redact, scrub
from bika.postgres.dump import DumpScope
from bika.repository.manifest import KINDS
from bika.retention import DEFAULT_RULES, Policy, Rule
from bika.schedule import ScheduleConfig
from bika.signing import parse_public
from bika.storage import StorageSettings
from bika.units import parse_duration

PREFIX = "BIKA_"
NESTING = "__"

# settings whose variables are not (only) BIKA_<NAME>, first match wins
OLDER_NAMES: dict[str, tuple[str, ...]] = {
    "database_url": ("BIKA_DATABASE_URL", "DATABASE_URL"),
    "copy.to": ("BIKA_COPY__TO", "BIKA_COPY_TO"),
    "supabase.access_token": ("BIKA_SUPABASE__ACCESS_TOKEN", "SUPABASE_ACCESS_TOKEN"),
}


# BIKA_ variables that are not settings: the CLI's own, and the test suite's (BIKA_TEST_*, …)
# BIKA_ variables that are not settings: read where they are used (cli, clock.py, crypto.py)
NOT_SETTINGS = (
    "BIKA_CONFIG",
    "BIKA_DEBUG",
    "BIKA_LOG_FILE",
    "BIKA_LOG_FORMAT",
    "BIKA_NOW",
    "BIKA_IDENTITY_PASSPHRASE",
    "BIKA_TRUST_UNSIGNED",
)
# BIKA_WAL_*: read by wal push/fetch (wal/), which PostgreSQL runs without this module
NOT_SETTINGS_PREFIXES = ("BIKA_TEST_", "BIKA_AZURITE", "BIKA_WAL_")

_LOG = logging.getLogger(__name__)


class _Deferred(BaseModel):
    """A settings table some of whose values named an unset ${VAR}: reading one of those
    raises its ConfigError, reading the others works, so a command fails only for what it uses."""

    _unset: dict[str, str] = PrivateAttr(default_factory=dict)

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            private = object.__getattribute__(self, "__pydantic_private__")
            if private and name in private["_unset"]:
                raise ConfigError(private["_unset"][name])
        return super().__getattribute__(name)


class StorageConfig(StorageSettings, _Deferred):
    """The [storage] table: StorageSettings, plus the storage class each kind of backup's
    artifacts get."""

    classes: dict[str, str] = Field(default_factory=dict)
    """Backup kind → storage class (S3, GCS) or access tier (Azure) of its artifacts."""

    @field_validator("classes")
    @classmethod
    def _kinds(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, storage_class in value.items():
            if kind not in KINDS:
                raise ValueError(f"{kind!r} is not a backup kind ({', '.join(KINDS)})")
            if not storage_class.strip():
                raise ValueError(f"the storage class for {kind!r} is empty")
        return value

    def storage_class(self, kind: str) -> str | None:
        return self.classes.get(kind)


class CheckConfig(_Deferred):
    """The [check] table: the thresholds of `bika check` (monitor.Thresholds)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    max_age: str = "25h"
    """A database without a backup this long is critical."""
    drill_max_age: str = "35d"
    """No passed drill this long is a warning."""
    size_window: int = Field(default=10, ge=1)
    """Earlier backups of the same database that make "usual"."""
    size_k: float = Field(default=3.0, gt=0)
    """The size band: median ± size_k standard deviations (from the MAD)…"""
    size_min_band: float = Field(default=0.10, ge=0)
    """…and at least ± this share of the median."""
    row_drop: float = Field(default=0.20, gt=0, le=1)
    """A table losing more than this share of its rows since the previous backup warns."""
    copy_grace: str = "2h"
    """A backup younger than this may still be on its way to the second repository."""

    @field_validator("max_age", "drill_max_age", "copy_grace")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    def thresholds(self) -> Thresholds:
        return Thresholds(
            max_age=parse_duration(self.max_age),
            drill_max_age=parse_duration(self.drill_max_age),
            size_window=self.size_window,
            size_k=self.size_k,
            size_min_band=self.size_min_band,
            row_drop=self.row_drop,
            copy_grace=parse_duration(self.copy_grace),
        )


class CopyConfig(_Deferred):
    """The [copy] table: the second repository `bika copy` fills (the 3-2-1 rule)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    to: str | None = None
    """Destination repository."""
    storage: StorageConfig | None = None
    """How to reach it; default: the [storage] table."""


class BackupConfig(_Deferred):
    """The [backup] table: which part of the database a backup covers, as lists of pg_dump's
    patterns (the same as `bika backup --schema …` and the other scope flags)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    schema_: list[str] = Field(default_factory=list, alias="schema")
    """Only schemas matching (pg_dump --schema)."""
    exclude_schema: list[str] = Field(default_factory=list)
    """Schemas left out (pg_dump --exclude-schema)."""
    table: list[str] = Field(default_factory=list)
    """Only tables matching (pg_dump --table)."""
    exclude_table: list[str] = Field(default_factory=list)
    """Tables left out (pg_dump --exclude-table)."""
    exclude_table_data: list[str] = Field(default_factory=list)
    """Tables whose definition is kept but not their rows (pg_dump --exclude-table-data)."""

    @field_validator("*", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        # one pattern from an environment variable (BIKA_BACKUP__EXCLUDE_TABLE_DATA=…)
        return [value] if isinstance(value, str) else value

    @field_validator("*")
    @classmethod
    def _not_blank(cls, value: list[str]) -> list[str]:
        if any(not pattern.strip() for pattern in value):
            raise ValueError("a pattern is empty")
        return value

    def scope(self) -> DumpScope:
        return DumpScope(
            schemas=tuple(self.schema_),
            exclude_schemas=tuple(self.exclude_schema),
            tables=tuple(self.table),
            exclude_tables=tuple(self.exclude_table),
            exclude_table_data=tuple(self.exclude_table_data),
        )


class SupabaseConfig(_Deferred):
    """The [supabase] table: what a backup keeps of a Supabase project besides its database."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    functions_dir: Path | None = None
    """Edge Functions folder (supabase/functions), archived into each backup."""
    project_ref: str | None = None
    """The project's reference id, for the Management API."""
    access_token: SecretStr | None = None
    """Management API token; default $SUPABASE_ACCESS_TOKEN."""
    api_url: str = "https://api.supabase.com"
    """Management API base URL."""
    project_config: bool = True
    """With a token and project_ref: snapshot the project's configuration into each backup."""

    @field_validator("project_ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z0-9]{6,40}", value):
            raise ValueError(f"{value!r} is not a project ref (lower-case letters and digits)")
        return value


class SecretsConfig(_Deferred):
    """The [secrets] table: environment values kept encrypted in each backup (env artifact)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    env_files: list[Path] = Field(default_factory=list)
    """.env files whose assignments are kept."""
    env: list[str] = Field(default_factory=list)
    """Names of environment variables whose values are kept."""
    inventory_key: SecretStr | None = None
    """Key of the manifest's value hashes; default a random key kept on this host."""

    @field_validator("env", "env_files", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return [v for v in re.split(r"[\s,]+", value) if v] if isinstance(value, str) else value

    @field_validator("env")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @property
    def wanted(self) -> bool:
        return bool(self.env_files or self.env)


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
    pitr_window: str = Field(
        default="7d", description="physical backups and WAL: recoverable to any point this far back"
    )

    @field_validator("keep_within", "pitr_window")
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


class Settings(_Deferred):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    repo: str | None = None
    """Repository: a folder, s3://, gs://, az:// or azure:// URL."""
    database_url: SecretStr | None = None
    """postgresql://user:pw@host/db."""
    identity: Path | None = None
    """Age identity file, to read data back."""
    recipients: list[str] = Field(default_factory=list)
    """age1… public keys."""
    signing_key: Path | None = None
    """ed25519 signing key file (bika key generate --signing): the backup host signs every
    manifest, drill record and event it writes with it."""
    trusted_signers: list[str] = Field(default_factory=list)
    """ed25519:… public keys whose signatures this host accepts; once set, an unsigned
    backup or one signed by another key is refused (--trust-unsigned for old ones)."""
    escrow_recipient: str | None = None
    """age1… public key of an offline escrow identity: `bika check` warns when the newest
    backups are not encrypted to it."""
    pg_bin_dir: str | None = None
    """Folder of pg_dump/pg_restore to use."""
    profile: Literal["auto", "postgres", "supabase"] = "auto"
    """What the database is: `supabase` backs up a project's own objects and data, not the
    platform's; `auto` takes it from the host (*.supabase.co, *.supabase.com) or from the
    platform's schemas and roles being there."""
    compression_level: int = Field(3, ge=1, le=22)
    """zstd level."""
    compression_threads: int = Field(0, ge=0)
    """zstd threads, 0 = one per core."""
    storage: StorageConfig = Field(default_factory=StorageConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    copy_: CopyConfig = Field(default_factory=CopyConfig, alias="copy")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    check: CheckConfig = Field(default_factory=CheckConfig)
    supabase: SupabaseConfig = Field(default_factory=SupabaseConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    notify: list[SecretStr] = Field(default_factory=list)
    """apprise URLs (slack://…, mailto://…, tgram://…, json://host/path) alerted on a change of
    `bika check`'s state and on every failed backup."""
    heartbeat_url: SecretStr | None = None
    """Pinged after each successful backup, and at /fail after a failed one (healthchecks.io)."""

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _file: Path | None = PrivateAttr(default=None)

    @field_validator("recipients", "trusted_signers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v for v in re.split(r"[\s,]+", value) if v]
        return value

    @field_validator("trusted_signers")
    @classmethod
    def _signers(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                parse_public(text)
            except KeySettingError as exc:
                raise ValueError(str(exc)) from None
        return value

    @property
    def config_file(self) -> Path | None:
        """The bika.toml these settings were read from, if any."""
        return self._file

    def require_repo(self) -> str:
        if not self.repo:
            raise ConfigError(
                "no repository given; pass --repo PATH, set BIKA_REPO, or put repo = … in bika.toml"
            )
        return self.repo

    def require_copy_to(self) -> str:
        if not self.copy_.to:
            raise ConfigError(
                "no destination given; pass --to REPO, set BIKA_COPY__TO, or put to = … in the"
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

    def explain(self) -> list[SettingRow]:
        """Every setting's effective value (secrets hidden) and where it came from."""
        return [
            SettingRow(name, _shown(value), *self._origin(name)) for name, value in _walk(self, "")
        ]

    def _origin(self, name: str) -> tuple[str, str | None]:
        origins = self._origins
        found = origins.get(name) or next(
            (where for key, where in origins.items() if key.startswith(name + ".")), None
        )
        if found is None:
            return "default", None
        source, _, detail = found.partition(" ")
        return source, detail or None


@dataclass(frozen=True)
class SettingRow:
    """One line of `bika config show`."""

    name: str
    value: Any
    """As shown: secrets are "***", passwords in URLs hidden; None when unset."""
    source: str
    """flag, env, file or default."""
    detail: str | None = None
    """The variable (env) or the file (file) it came from."""


def load_settings(
    config: Path | None = None, *, environ: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Merge flags (None = not given; dotted names for tables, "copy.to") over the environment
    over the config file."""
    environ = os.environ if environ is None else environ
    path = find_config(config, environ)
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    unset: dict[str, str] = {}
    if path is not None:
        data = _read_file(path)
        for name, value in _leaves(data, ""):
            resolved, missing = _interpolate(value, environ)
            if missing is None:
                _set(values, name, resolved)
            else:
                unset[name] = (
                    f"setting {name!r} in {path} refers to ${{{missing}}}, which is not set in"
                    f" the environment; set {missing} or change the setting"
                )
                _table(values, name.rpartition(".")[0])  # even a table of unset values stays
            origins[name] = f"file {path}"
    for name, variable, value in _from_environment(environ):
        _override(values, origins, unset, name, value, f"env {variable}")
    for name, value in flags.items():
        if value is not None and value != []:
            _override(values, origins, unset, name, value, "flag")
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "settings"
        origin = next(
            (o for key, o in origins.items() if where == key or where.startswith(key + ".")), None
        )
        given = f" (from {origin.split(' ', 1)[1]})" if origin and origin != "flag" else ""
        if error["type"] == "extra_forbidden":
            raise ConfigError(f"unknown setting {where!r}{given}; check its spelling") from None
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"setting {where!r}{given}: {message}") from None
    settings._origins = origins
    settings._file = path
    for name, message in unset.items():
        _defer(settings, name.split("."), message)
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}; fix the file or pass --config"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {reason}") from None
    known = {field.alias or name for name, field in Settings.model_fields.items()}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {sorted(unknown)[0]!r}; known settings are "
            + ", ".join(sorted(known))
        )
    return data


def _leaves(data: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of a file's settings; tables are walked, values kept whole. A table
    that is a setting's value (storage.classes) is walked too, so ${VAR} works inside it."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, name + ".")
        elif isinstance(value, dict):
            yield name, {}
        else:
            yield name, value


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(value: Any, environ: Mapping[str, str]) -> tuple[Any, str | None]:
    """The value with ${NAME}s replaced, and the first NAME that is not set (or None)."""
    if isinstance(value, list):
        items = [_interpolate(v, environ) for v in value]
        missing = next((m for _, m in items if m is not None), None)
        return [v for v, _ in items], missing
    if not isinstance(value, str):
        return value, None
    names = _VARIABLE.findall(value)
    missing = next((name for name in names if name not in environ), None)
    if missing is not None:
        return None, missing
    return _VARIABLE.sub(lambda m: environ[m.group(1)], value), None


def _variables(name: str) -> tuple[str, ...]:
    return OLDER_NAMES.get(name, (PREFIX + name.replace(".", NESTING).upper(),))


def _from_environment(environ: Mapping[str, str]) -> Iterator[tuple[str, str, Any]]:
    """(setting, variable, value) for each setting a non-empty variable gives; a warning for
    a BIKA_ variable that is no setting (as pgBackRest warns of an invalid option)."""
    names = list(_setting_names(Settings, ""))
    known = {variable for name, _ in names for variable in _variables(name)}
    for variable in sorted(environ):
        stray = variable.startswith(PREFIX) and variable not in known
        if (
            stray
            and variable not in NOT_SETTINGS
            and not variable.startswith(NOT_SETTINGS_PREFIXES)
        ):
            close = difflib.get_close_matches(variable, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else "; check its spelling"
            _LOG.warning(f"{variable} is not a bika setting and is ignored{hint}")
    for name, is_table in names:
        for variable in _variables(name):
            text = environ.get(variable)
            if not text:
                continue
            value: Any = text
            if is_table:
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    raise ConfigError(
                        f'{variable} is not JSON; write it as \'{{"key": "value"}}\''
                    ) from None
            yield name, variable, value
            break


def _setting_names(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, bool]]:
    """Every setting of a model, dotted, and whether its value is itself a table (a dict)."""
    for name, field in model.model_fields.items():
        dotted = prefix + (field.alias or name)
        table = _table_model(field.annotation)
        if table is not None:
            yield from _setting_names(table, dotted + ".")
        else:
            yield dotted, typing.get_origin(field.annotation) is dict


def _table_model(annotation: Any) -> type[BaseModel] | None:
    """The settings table a field holds (StorageConfig for `StorageConfig | None`), if any."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for option in (annotation, *options):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _override(
    values: dict[str, Any],
    origins: dict[str, str],
    unset: dict[str, str],
    name: str,
    value: Any,
    origin: str,
) -> None:
    """A higher layer's value for a setting: it replaces the file's, and the file's ${VAR}s."""
    _set(values, name, value)
    for key in [k for k in origins if k == name or k.startswith(name + ".")]:
        del origins[key]
        unset.pop(key, None)
    origins[name] = origin


def _set(values: dict[str, Any], name: str, value: Any) -> None:
    """Set a dotted name ("copy.to") in nested tables, making the tables on the way."""
    table, _, last = name.rpartition(".")
    _table(values, table)[last] = value


def _table(values: dict[str, Any], name: str) -> dict[str, Any]:
    """The table a dotted name ("copy.storage") names in values, made if missing."""
    for part in name.split(".") if name else ():
        inner = values.get(part)
        if not isinstance(inner, dict):
            inner = {}
            values[part] = inner
        values = inner
    return values


def _defer(model: BaseModel, parts: list[str], message: str) -> None:
    """Make the field parts name (or the table setting that holds it) raise when read."""
    fields = {field.alias or name: name for name, field in type(model).model_fields.items()}
    field = fields.get(parts[0])
    if field is None:
        return
    inner = model.__dict__.get(field)
    if len(parts) > 1 and isinstance(inner, _Deferred):
        _defer(inner, parts[1:], message)
    elif isinstance(model, _Deferred):
        model._unset.setdefault(field, message)


def _walk(model: BaseModel, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every setting, without tripping over an unset ${VAR}."""
    unset = model._unset if isinstance(model, _Deferred) else {}
    for name, field in type(model).model_fields.items():
        dotted = prefix + (field.alias or name)
        if name in unset:
            yield dotted, _Unset(unset[name])
            continue
        value = model.__dict__[name]
        table = _table_model(field.annotation)
        if isinstance(value, BaseModel):
            yield from _walk(value, dotted + ".")
        elif value is None and table is not None:
            continue  # an absent optional table ([copy.storage]): nothing to show
        else:
            yield dotted, value


@dataclass(frozen=True)
class _Unset:
    message: str


def _shown_secret(text: str) -> str:
    """A database URL with its password hidden (it says which database); any other secret
    as ***."""
    try:
        conn = ConnInfo.parse(text)
    except ConfigError:
        return "***"
    if "://" not in text and "=" not in text:
        return "***"
    return scrub(text, conn)


_MISSING = re.compile(r"refers to (\$\{\w+\}), which is not set")


def _shown(value: Any) -> Any:
    """A setting's value as `bika config show` prints it: never a secret."""
    if isinstance(value, _Unset):
        match = _MISSING.search(value.message)
        return f"{match.group(1) if match else '${…}'} (not set)"
    if isinstance(value, SecretStr):
        return _shown_secret(value.get_secret_value())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value
