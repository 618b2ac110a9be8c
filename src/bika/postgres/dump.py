"""pg_dump's command line for a backup and what part of the database it covers (its scope);
pg_dumpall's for the roles.

The scope's patterns are pg_dump's own (`--schema`, `--table`, …): they go to pg_dump as given,
and name_regexes turns one into the regular expressions pg_dump matches names with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DumpScope:
    """Which schemas and tables a dump covers; empty means the whole database."""

    schemas: tuple[str, ...] = ()
    exclude_schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    exclude_table_data: tuple[str, ...] = ()

    @property
    def whole(self) -> bool:
        return not (
            self.schemas
            or self.exclude_schemas
            or self.tables
            or self.exclude_tables
            or self.exclude_table_data
        )

    def argv(self) -> list[str]:
        """pg_dump's options for the scope; a --schema or --table pattern that matches nothing
        is an error (--strict-names) rather than a backup that silently holds less."""
        # one --option=pattern per pattern: a pattern starting with "-" stays a pattern
        options = (
            ("--schema", self.schemas),
            ("--exclude-schema", self.exclude_schemas),
            ("--table", self.tables),
            ("--exclude-table", self.exclude_tables),
            ("--exclude-table-data", self.exclude_table_data),
        )
        argv = [f"{option}={pattern}" for option, patterns in options for pattern in patterns]
        return [*argv, "--strict-names"] if self.schemas or self.tables else argv


def pg_dump_argv(pg_dump: Path, conninfo: str, scope: DumpScope) -> list[str | Path]:
    """A custom-format archive on stdout, uncompressed (bika compresses it, and reads its data
    blocks as they pass)."""
    return [
        pg_dump,
        "--format=custom",
        "--compress=0",
        "--no-sync",
        *scope.argv(),
        f"--dbname={conninfo}",
    ]


@dataclass(frozen=True)
class NameRegexes:
    """A pattern as pg_dump matches it: whole-string regular expressions for the schema
    (None: the object must be visible in the search path) and for the name."""

    schema: str | None
    name: str


def roles_argv(pg_dumpall: Path, conninfo: str) -> list[str | Path]:
    """pg_dumpall's command line for the cluster's roles, without their passwords."""
    return [pg_dumpall, "--roles-only", "--no-role-passwords", f"--dbname={conninfo}"]


def name_regexes(pattern: str, *, qualified: bool = True) -> NameRegexes:
    """Convert a psql-style pattern the way pg_dump does (patternToSQLRegex in
    fe_utils/string_utils.c): `*` and `?` are wildcards, unquoted letters are folded to lower
    case, double quotes quote, `$` is literal, other regex characters pass through outside
    quotes; with `qualified`, unquoted dots separate database, schema and name."""
    parts: list[str] = []
    current = ""
    in_quotes = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == '"':
            if in_quotes and pattern[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            else:
                in_quotes = not in_quotes
        elif not in_quotes and "A" <= ch <= "Z":
            current += ch.lower()
        elif not in_quotes and ch == "*":
            current += ".*"
        elif not in_quotes and ch == "?":
            current += "."
        elif not in_quotes and ch == "." and qualified and len(parts) < 2:
            parts.append(current)
            current = ""
        elif ch == "$":
            current += "\\$"
        else:
            # "[]" is far likelier an array type's name than a bracket expression
            special = in_quotes and ch in "|*+?()[]{}.^$\\"
            if special or (ch == "[" and pattern[i + 1 : i + 2] == "]"):
                current += "\\"
            current += ch
        i += 1
    parts.append(current)
    name = f"^({parts[-1]})$"
    schema = f"^({parts[-2]})$" if len(parts) >= 2 else None
    return NameRegexes(schema, name)
