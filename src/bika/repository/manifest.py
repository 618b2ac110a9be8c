"""The manifest: what one backup holds, written last, read by list/show/verify/restore.

Plain models with no I/O; docs/FORMAT.md describes the same fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT_VERSION = 1
KINDS = ("manual", "daily", "weekly", "monthly", "pre-migration")


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


class Source(_Model):
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


class Manifest(_Model):
    format_version: int = FORMAT_VERSION
    tool: str
    id: str
    repository_id: str
    kind: str
    label: str | None = None
    started_at: datetime
    finished_at: datetime
    source: Source
    artifacts: dict[str, Artifact]
    tables: list[TableStats]
    large_objects: LargeObjects = LargeObjects()
    roles: Roles
    scope: Scope = Scope()
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
