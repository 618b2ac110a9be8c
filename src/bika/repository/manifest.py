"""The manifest: what one backup holds, written last, read by list/show/verify/restore.

Plain models with no I/O; docs/FORMAT.md describes the same fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
KINDS = ("manual", "daily", "weekly", "monthly", "pre-migration")


def _absent(value: object) -> bool:
    return value is None


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Artifact(_Model):
    """One stored object of a backup."""

    key: str = Field(description="object key relative to the repository root")
    content: str = Field(description="what the plaintext is: pg_dump-custom, sql")
    codecs: list[str] = Field(description="applied in order when writing: zstd then age")
    stored_size: int
    stored_sha256: str
    plain_size: int
    plain_sha256: str
    data_offsets: dict[int, int] | None = Field(
        default=None,
        description="pg_dump-custom: TOC dump id → plaintext offset of its data block, which"
        " a streamed archive's TOC cannot hold; restore writes them into a temp file",
    )


class TableStats(_Model):
    schema_: str = Field(alias="schema")
    name: str
    rows: int = Field(description="exact: rows in the dump's COPY data")
    sha256: str = Field(description="sha256 of the table's COPY rows, each framed (FORMAT.md)")
    bytes: int = Field(description="size of the table's framed COPY data")
    estimated_rows: int | None = Field(
        default=None, description="pg_class.reltuples at backup time, for comparison only"
    )

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @property
    def qualified(self) -> str:
        return f"{self.schema_}.{self.name}"


class DumpSource(_Model):
    database: str
    host_hash: str = Field(description="sha256 prefix of host:port, so hosts can be told apart")
    server_version: str
    pg_dump_version: str
    database_size: int | None = None
    output_settings: dict[str, str] = Field(
        default_factory=dict,
        description="TimeZone, bytea_output, lc_monetary of the dump's session: a drill"
        " recomputes table hashes under the same",
    )


class TableName(_Model):
    schema_: str = Field(alias="schema")
    name: str

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @property
    def qualified(self) -> str:
        return f"{self.schema_}.{self.name}"


class Scope(_Model):
    """What the backup covers: pg_dump's selection patterns as given (all empty: the whole
    database), and the tables whose data they left out, so that a restore, a drill or
    monitoring tells a table left out on purpose from one that went missing."""

    schema_: list[str] = Field(default_factory=list, alias="schema")
    exclude_schema: list[str] = Field(default_factory=list)
    table: list[str] = Field(default_factory=list)
    exclude_table: list[str] = Field(default_factory=list)
    exclude_table_data: list[str] = Field(default_factory=list)
    tables_without_data: list[TableName] = Field(
        default_factory=list,
        description="tables dumped without their rows (exclude_table_data), as resolved at"
        " backup time: restored empty",
    )

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    @property
    def whole(self) -> bool:
        return not (
            self.schema_
            or self.exclude_schema
            or self.table
            or self.exclude_table
            or self.exclude_table_data
        )

    def options(self) -> list[str]:
        """The patterns as pg_dump options, for people: `--exclude-table-data=public.log`."""
        given = (
            ("--schema", self.schema_),
            ("--exclude-schema", self.exclude_schema),
            ("--table", self.table),
            ("--exclude-table", self.exclude_table),
            ("--exclude-table-data", self.exclude_table_data),
        )
        return [f"{option}={pattern}" for option, patterns in given for pattern in patterns]


class Roles(_Model):
    status: Literal["saved", "skipped"]
    detail: str = ""


class LargeObjects(_Model):
    count: int = 0
    bytes: int = 0


class FunctionsSource(_Model):
    """Where the `functions` artifact (a tar of the Supabase project's functions) came from."""

    source: Literal["git", "folder"] = Field(
        description="git: `git archive` of the commit; folder: the files as they were on disk"
    )
    commit: str | None = Field(default=None, description="git: the commit archived (HEAD)")
    uncommitted: bool = Field(
        default=False, description="git: the folder had changes not in that commit"
    )
    paths: list[str] = Field(description="archived paths, relative to the archive's root")
    files: int = 0


class SecretEntry(_Model):
    name: str
    source: str = Field(description="`env` or the env file the value came from")
    hash: str = Field(description="keyed hash of the value (FORMAT.md), never the value")


class SecretsInventory(_Model):
    """What the `env` artifact holds, without any value: names and keyed hashes."""

    key_id: str = Field(description="names the key of the hashes; hashes compare only within one")
    entries: list[SecretEntry] = Field(default_factory=list)
    unset: list[str] = Field(
        default_factory=list, description="[secrets] env names that were not set at backup time"
    )


class ProjectConfig(_Model):
    """What the `project` artifact (a Management API snapshot) holds, by name."""

    project_ref: str
    parts: list[str] = Field(default_factory=list, description="API parts read")
    functions: int = 0
    secrets: int = Field(default=0, description="secret names (the API gives no values)")
    unreadable: list[str] = Field(
        default_factory=list, description="parts the token could not read"
    )


class Manifest(_Model):
    format_version: int = FORMAT_VERSION
    tool: str
    id: str
    repository_id: str
    kind: str
    label: str | None = None
    started_at: datetime
    finished_at: datetime
    source: DumpSource
    artifacts: dict[str, Artifact]
    tables: list[TableStats]
    large_objects: LargeObjects = LargeObjects()
    roles: Roles
    scope: Scope = Scope()
    recipients: list[str] | None = Field(
        default=None,
        description="the age recipients the artifacts are encrypted to (bika.json's at backup"
        " or rekey time); None in manifests written before bika recorded it",
    )
    rekeyed_at: datetime | None = Field(
        default=None,
        description="when `bika rekey` last re-encrypted the artifacts",
        exclude_if=_absent,
    )
    # a Supabase project's artifacts: absent (not null) from a manifest without them
    functions: FunctionsSource | None = Field(default=None, exclude_if=_absent)
    secrets: SecretsInventory | None = Field(default=None, exclude_if=_absent)
    project_config: ProjectConfig | None = Field(default=None, exclude_if=_absent)
    profile: Literal["postgres", "supabase"] = "postgres"

    @property
    def stored_size(self) -> int:
        return sum(a.stored_size for a in self.artifacts.values())

    @property
    def plain_size(self) -> int:
        return sum(a.plain_size for a in self.artifacts.values())

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"
