"""The click application, its global options, and the shared state commands read.

Commands live one per module (backup_cmd.py, …) and register themselves on `app`; they open
their repository through open_repository(), the one place settings become storage. Global
options (--config, --quiet, --debug, --log-file, --log-format) are accepted before or after the
command's name. Progress notes go through logging (bika.log), so unattended runs get timestamps.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from bika import log
from bika.cli.render import JSON, console
from bika.config import Settings, StorageConfig, load_settings
from bika.errors import BikaError, RepositoryError
from bika.operations.runlog import Run, recorded
from bika.postgres.connection import redact
from bika.repository import Repository
from bika.repository.signatures import Trust
from bika.storage import Storage, open_storage


@dataclass
class State:
    config: Path | None = None
    debug: bool = False
    quiet: bool = False
    log_file: Path | None = None
    log_format: log.LogFormat = "text"
    trust_unsigned: bool = False
    # consoles that print every string as data (render.py): no markup, control characters
    # escaped, piped lines kept whole
    out: Console = field(default_factory=console)
    err: Console = field(default_factory=lambda: console(stderr=True))

    run: Run | None = None
    """The run being recorded in the run log, while a @logged command runs."""

    def settings(self, **flags: Any) -> Settings:
        return load_settings(self.config, **flags)

    @property
    def interactive(self) -> bool:
        return not self.quiet and sys.stderr.isatty()

    def start(self, command: str) -> None:
        """Set up logging for this run of command, once its options are known."""
        log.configure(
            interactive=sys.stderr.isatty(),
            quiet=self.quiet,
            debug=self.debug,
            log_file=self.log_file,
            log_format=self.log_format,
            command=command,
        )

    def say(self, message: str, **fields: Any) -> None:
        """Progress notes go to stderr (not with --quiet), so stdout stays parseable (ids,
        JSON), and to --log-file; fields (backup_id=…) become a JSON line's keys."""
        _LOG.info(message, extra=fields)

    def fail(self, message: str, **fields: Any) -> None:
        """A failure worth a line even with --quiet (the command's exit code says it too)."""
        _LOG.error(message, extra=fields)


_LOG = logging.getLogger("bika.cli")


STATE = State()


def _set_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        STATE.config = value


def _set_flag(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        setattr(STATE, str(param.name), True)


def _set_value(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None:
        setattr(STATE, str(param.name), value)


# Accepted by the root and by every command, so `bika -q list` and `bika list -q` both work.
GLOBAL_OPTIONS: list[Callable[[], click.Option]] = [
    lambda: click.Option(
        ["--config"],
        type=click.Path(path_type=Path),
        metavar="FILE",
        expose_value=False,
        callback=_set_config,
        help="settings file (default: the first of ./bika.toml, ~/.config/bika/bika.toml,"
        " /etc/bika/bika.toml) [env: BIKA_CONFIG]",
    ),
    lambda: click.Option(
        ["--quiet", "-q"],
        is_flag=True,
        expose_value=False,
        callback=_set_flag,
        help="no progress output; results and errors only",
    ),
    lambda: click.Option(
        ["--debug"],
        is_flag=True,
        expose_value=False,
        callback=_set_flag,
        help="show tracebacks on errors [env: BIKA_DEBUG=1]",
    ),
    lambda: click.Option(
        ["--log-file"],
        type=click.Path(path_type=Path, dir_okay=False),
        metavar="FILE",
        envvar="BIKA_LOG_FILE",
        expose_value=False,
        callback=_set_value,
        help="also append every message, with its time and level, to FILE [env: BIKA_LOG_FILE]",
    ),
    lambda: click.Option(
        ["--log-format"],
        type=click.Choice(log.FORMATS),
        envvar="BIKA_LOG_FORMAT",
        expose_value=False,
        callback=_set_value,
        help="lines of --log-file, and of stderr when it is not a terminal: text or JSON"
        " (time, level, message, command, backup_id …) [env: BIKA_LOG_FORMAT]",
    ),
    lambda: click.Option(
        ["--trust-unsigned"],
        is_flag=True,
        envvar="BIKA_TRUST_UNSIGNED",
        expose_value=False,
        callback=_set_flag,
        help="use backups, drill records and events that are not signed (made before signing"
        " was set up), with a warning; a wrong signature is still refused"
        " [env: BIKA_TRUST_UNSIGNED=1]",
    ),
]
_GLOBAL_NAMES = {
    "config",
    "quiet",
    "debug",
    "version",
    "log_file",
    "log_format",
    "trust_unsigned",
}


def _format_split_options(cmd: click.Command, ctx: click.Context, out: click.HelpFormatter) -> None:
    """Options, then the global ones under their own heading (as restic's "inherited" flags)."""
    own: list[tuple[str, str]] = []
    shared: list[tuple[str, str]] = []
    help_option = cmd.get_help_option(ctx)
    for param in cmd.get_params(ctx):
        if not isinstance(param, click.Option):
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            is_global = param is help_option or param.name in _GLOBAL_NAMES
            (shared if is_global else own).append(record)
    if own:
        with out.section("Options"):
            out.write_dl(own)
    if shared:
        with out.section("Global options"):
            out.write_dl(shared)


class BikaCommand(click.Command):
    """A command that also takes the global options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(make() for make in GLOBAL_OPTIONS)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_split_options(self, ctx, formatter)

    def invoke(self, ctx: click.Context) -> Any:
        STATE.start(ctx.command_path.removeprefix("bika "))
        return super().invoke(ctx)


class BikaGroup(click.Group):
    """Commands listed by section; an unknown command gets a "did you mean"."""

    command_class = BikaCommand
    # section title → command names, in the order a user meets them
    sections: Sequence[tuple[str, Sequence[str]]] = ()

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            importlib.import_module(self.lazy[cmd_name])
        return self.commands.get(cmd_name)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(make() for make in GLOBAL_OPTIONS)
        # command name → the module that defines it, imported when the command is used (so a
        # command pays only for its own imports; `bika --help` imports them all)
        self.lazy: dict[str, str] = {}

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _format_split_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed: set[str] = set()
        for title, names in [*self.sections, ("Other commands", sorted(self.commands))]:
            rows = []
            for name in names:
                command = self.get_command(ctx, name)
                if command is None or command.hidden or name in listed:
                    continue
                listed.add(name)
                rows.append((name, command.get_short_help_str(limit=200)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            names = self.list_commands(ctx)
            close = [n for n in names if n.startswith(name)][:1] or difflib.get_close_matches(
                name, names, n=1, cutoff=0.6
            )
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.fail(f"No such command {name!r}.{hint}")
        return super().resolve_command(ctx, args)


EXIT_CODES = """\b
Exit codes:
  0    success
  1    a backup, verify, restore, drill or copy failed (the message says why)
  2    bad usage or settings (unknown option, missing setting, malformed value)
  70   internal error: a bug in bika (run with --debug and report it)
  130  interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM); 141 output pipe closed
"""

EXAMPLES = """\b
Examples:
  bika key generate --out ~/.config/bika/key.txt      # prints the public key age1…
  bika init --repo s3://bucket/prod --recipient age1…
  bika backup --repo s3://bucket/prod --db "$DATABASE_URL" --kind daily
  bika list --repo s3://bucket/prod
  bika drill latest --identity ~/.config/bika/key.txt
"""


@click.group(
    cls=BikaGroup,
    name="bika",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXAMPLES + "\n" + EXIT_CODES,
)
# the version is looked up when --version is given (importlib.metadata is slow to import)
@click.version_option(
    None,
    "--version",
    "-V",
    package_name="bika",
    prog_name="bika",
    message="%(prog)s %(version)s",
)
def app() -> None:
    """Encrypted, verified, drilled backups of PostgreSQL and Supabase databases."""


app.sections = (
    ("Back up", ("init", "backup", "run", "copy", "prune", "schedule", "daemon")),
    ("Look", ("list", "show")),
    ("Prove and watch", ("verify", "drill", "check", "checklist", "report", "audit")),
    ("Restore", ("restore", "runbook", "wal")),
    ("Supabase", ("supabase", "secrets")),
    ("Set up and check", ("key", "rekey", "config", "doctor", "demo", "completion")),
)
app.lazy = {
    name: f"bika.cli.{module}_cmd"
    for module, names in {
        "backup": ("backup",),
        "run": ("run",),
        "copy": ("copy",),
        "prune": ("prune",),
        "schedule": ("schedule", "daemon"),
        "list": ("list", "show"),
        "verify": ("verify",),
        "drill": ("drill",),
        "check": ("check", "checklist", "report"),
        "audit": ("audit",),
        "restore": ("restore",),
        "wal": ("wal",),
        "runbook": ("runbook",),
        "init": ("init",),
        "key": ("key",),
        "rekey": ("rekey",),
        "config": ("config",),
        "doctor": ("doctor",),
        "demo": ("demo",),
        "completion": ("completion",),
        "supabase": ("supabase",),
        "secrets": ("secrets",),
    }.items()
    for name in names
}

F = TypeVar("F", bound=Callable[..., Any])


def open_repository_storage(settings: Settings) -> Storage:
    """The storage the settings' repository lives on, configured by the [storage] table."""
    return open_storage(settings.require_repo(), settings.storage)


def open_repository(settings: Settings) -> Repository:
    """The settings' repository, which must exist (bika init made it). The first one a
    logged command opens is where its run is recorded."""
    storage = open_repository_storage(settings)
    run = STATE.run if STATE.run is not None and STATE.run.repository is None else None
    if run is not None:
        run.url = storage.url
    try:
        repository = Repository.open(storage)
    except RepositoryError:
        if run is not None:
            run.url = None  # no repository there to log into, now or later
        raise
    repository.trust = trust(settings)
    repository.trust.signer()  # a missing or bad signing_key fails now, not after the dump
    if run is not None:
        run.attach(repository)
    return repository


def trust(settings: Settings) -> Trust:
    """How this host judges signatures (trusted_signers, --trust-unsigned) and signs
    (signing_key)."""
    return Trust(
        pinned=frozenset(s.strip() for s in settings.trusted_signers),
        trust_unsigned=STATE.trust_unsigned,
        signing_key=settings.signing_key,
    )


def logged(command: str) -> Callable[[F], F]:
    """Record every run of the command, failed ones included, in its repository's run log."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            run: Run | None = None
            failure: str | None = None
            try:
                with recorded(command) as run:
                    STATE.run = run
                    return func(*args, **kwargs)
            except Exception as exc:
                if getattr(exc, "exit_code", None) != 0:  # click's Exit(0) is no failure
                    failure = redact(" ".join(str(exc).split())) or type(exc).__name__
                raise
            finally:
                STATE.run = None
                for warning in run.warnings if run is not None else []:
                    STATE.say(f"note: {warning}")
                if command == "backup":
                    _after_backup(run, failure)

        return wrapper  # type: ignore[return-value]

    return decorate


def _after_backup(run: Run | None, failure: str | None) -> None:
    """The dead-man's switch after every backup, and an alert after every failed one; neither
    ever fails the backup (an interrupted backup sends nothing: someone stopped it)."""
    # imported here: apprise and the monitoring rules cost every other command's start-up
    from bika.notify import Message, ping, send
    from bika.operations.check import record_status

    try:
        settings = STATE.settings()
    except BikaError:
        return
    where = run.url if run is not None and run.url else (settings.repo or "")
    if failure is not None and settings.notify:
        alert = Message(f"bika: backup failed ({where})", failure, "failure")
        send([url.get_secret_value() for url in settings.notify], alert)
    if failure is not None and run is not None and run.repository is not None:
        # the alert is sent: the next check, finding the failed run, need not send another
        record_status(run.repository, "CRITICAL")  # saving an event never fails the run
    url = settings.heartbeat_url.get_secret_value() if settings.heartbeat_url else None
    ping(url, failed=failure is not None)


def note_backups(*backup_ids: str, **detail: Any) -> None:
    """Name the backups the logged run touched, and what else its event should say."""
    if STATE.run is not None:
        STATE.run.backup_ids.extend(backup_ids)
        STATE.run.detail.update(detail)


def open_other_storage(url: str, config: StorageConfig) -> Storage:
    """A second repository's storage (bika copy --to), with its own storage settings."""
    return open_storage(url, config)


def repo_option(func: F) -> F:
    return click.option(
        "--repo",
        "-r",
        metavar="URL",
        help="repository: a folder, s3://bucket/prefix, gs://bucket/prefix,"
        " az://container/prefix or azure://account/container/prefix [env: BIKA_REPO]",
    )(func)


def identity_option(func: F) -> F:
    return click.option(
        "--identity",
        "-i",
        type=click.Path(path_type=Path),
        metavar="FILE",
        help="age identity (private key) file [env: BIKA_IDENTITY]",
    )(func)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        JSON.requested = True  # an error from here on is printed as JSON too (main.py)
    return value


def json_option(func: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=_set_json,
        help="one JSON document on stdout (docs/FORMAT.md); errors as JSON too",
    )(func)


def pg_bin_option(func: F) -> F:
    return click.option(
        "--pg-bin-dir",
        metavar="DIR",
        help="folder of pg_dump/pg_restore to use [env: BIKA_PG_BIN_DIR]",
    )(func)


def db_option(func: F) -> F:
    return click.option(
        "--db",
        metavar="URL",
        help="postgresql:// URL or key=value conninfo [env: BIKA_DATABASE_URL, DATABASE_URL]",
    )(func)
