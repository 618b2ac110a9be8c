"""`bika schedule show|export` and `bika daemon`: the [schedule] of bika.toml, run by bika itself
or handed to systemd, cron, Kubernetes or GitHub Actions.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import click
from prometheus_client import generate_latest

from bika.cli.app import STATE, BikaGroup, app
from bika.cli.check_cmd import report_for
from bika.cli.render import Column, print_table
from bika.config import Settings, load_settings
from bika.errors import ConfigError
from bika.findings import Finding
from bika.metrics import registry
from bika.monitor import History
from bika.operations.daemon import Daemon, Entry, State, state_path
from bika.report import page
from bika.schedule import Job, jobs, next_run
from bika.schedule_export import FORMATS, export


def _jobs(settings: Settings) -> list[Job]:
    return jobs(
        settings.schedule,
        has_identity=settings.identity is not None,
        has_copy=bool(settings.copy_.to),
    )


@app.group("schedule", cls=BikaGroup)
def schedule() -> None:
    """Show or export the [schedule] of bika.toml."""


@schedule.command("show")
@click.option("--count", default=3, show_default=True, metavar="N", help="next runs per job")
def schedule_show(count: int) -> None:
    """The jobs, what each runs, and their next run times."""
    settings = STATE.settings()
    now = datetime.now(UTC)
    rows = []
    for job in _jobs(settings):
        times, at = [], now
        for _ in range(count):
            at = next_run(job, at, settings.schedule.timezone)
            times.append(f"{at:%Y-%m-%d %H:%M:%S}")
        runs = " && ".join("bika " + " ".join(step) for step in job.steps)
        rows.append([job.name, job.cron, runs, ", ".join(times)])
    columns = [Column("job"), Column("cron"), Column("runs"), Column("next (UTC)")]
    print_table(STATE.out, columns, rows, title=f"schedule ({settings.schedule.timezone})")


@schedule.command("export")
@click.option("--systemd", "fmt", flag_value="systemd", help="a .service and .timer per job")
@click.option("--cron", "fmt", flag_value="cron", help="crontab lines")
@click.option("--kubernetes", "fmt", flag_value="kubernetes", help="a CronJob per job")
@click.option("--github-actions", "fmt", flag_value="github-actions", help="a scheduled workflow")
def schedule_export(fmt: str | None) -> None:
    """Print the schedule for the platform's own scheduler instead of `bika daemon`."""
    if fmt not in FORMATS:
        raise ConfigError("choose one of --systemd, --cron, --kubernetes or --github-actions")
    settings = STATE.settings()
    bika = shutil.which("bika") or "bika"
    config = str(STATE.config.resolve()) if STATE.config else None
    STATE.out.file.write(
        export(fmt, _jobs(settings), settings.schedule, bika=bika, config_file=config)
    )


@app.command("daemon")
@click.argument("configs", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--listen",
    metavar="HOST:PORT",
    help="serve /healthz and /metrics there (e.g. 127.0.0.1:9187)",
)
def daemon(configs: tuple[Path, ...], listen: str | None) -> None:
    """Run the schedule of bika.toml (or of each CONFIG given: one database and repository
    each), one job at a time; SIGTERM stops cleanly and exits 0."""
    files: list[Path | None] = list(configs) or [STATE.config]
    entries = []
    for file in files:
        settings = load_settings(file)
        entries += [Entry(file, job, settings.schedule.timezone) for job in _jobs(settings)]

    def checked() -> list[tuple[str, History, list[Finding]]]:
        reports = [report_for(load_settings(file)) for file in files]
        return [(r.repository, r.history, r.findings) for r in reports]

    def metrics() -> bytes:
        return bytes(generate_latest(registry(checked())))

    def status_page() -> bytes:
        return page(checked()).encode()

    address = None
    if listen:
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            raise ConfigError(f"--listen {listen!r} is not HOST:PORT, e.g. 127.0.0.1:9187")
        address = (host or "127.0.0.1", int(port))
    code = Daemon(
        entries, State(state_path()), listen=address, metrics=metrics, status_page=status_page
    ).run()
    raise click.exceptions.Exit(code)
