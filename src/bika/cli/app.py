"""The typer application, its global options, and the shared state commands read.

Commands live one per module (backup_cmd.py, …) and register themselves on `app`; they open
their repository through open_repository(), the one place settings become storage.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bika.config import Settings, StorageConfig, load_settings
from bika.repository import Repository
from bika.storage import Storage, open_storage

app = typer.Typer(
    name="bika",
    help="Encrypted, verified, drilled backups of PostgreSQL and Supabase databases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class State:
    config: Path | None = None
    debug: bool = False
    quiet: bool = False
    # piped output is read by programs and people alike: do not squeeze tables to 80 columns
    out: Console = field(
        default_factory=lambda: Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    )
    # piped stderr keeps each message on one line, for logs and for grep
    err: Console = field(
        default_factory=lambda: Console(
            stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty()
        )
    )

    def settings(self, **flags: Any) -> Settings:
        return load_settings(self.config, **flags)

    @property
    def interactive(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def say(self, message: str) -> None:
        """Progress notes go to stderr, so stdout stays parseable (ids, JSON)."""
        if not self.quiet:
            self.err.print(message)


STATE = State()


@app.callback()
def main(
    config: Annotated[
        Path | None, typer.Option("--config", help="settings file (default: ./bika.toml)")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
) -> None:
    STATE.config = config
    STATE.debug = debug
    STATE.quiet = quiet


def open_repository_storage(settings: Settings) -> Storage:
    """The storage the settings' repository lives on, configured by the [storage] table."""
    return open_storage(settings.require_repo(), settings.storage.storage_settings())


def open_repository(settings: Settings) -> Repository:
    """The settings' repository, which must exist (bika init made it)."""
    return Repository.open(open_repository_storage(settings))


def open_other_storage(url: str, config: StorageConfig) -> Storage:
    """A second repository's storage (bika copy --to), with its own storage settings."""
    return open_storage(url, config.storage_settings())


RepoOption = Annotated[
    str | None,
    typer.Option(
        "--repo",
        "-r",
        help="repository: a folder, s3://bucket/prefix, gs://bucket/prefix,"
        r" az://container/prefix or azure://account/container/prefix \[env: BIKA_REPO]",
    ),
]
IdentityOption = Annotated[
    Path | None,
    typer.Option("--identity", "-i", help="age identity (private key) file [env: BIKA_IDENTITY]"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
PgBinOption = Annotated[
    str | None, typer.Option("--pg-bin-dir", help="folder of pg_dump/pg_restore to use")
]
