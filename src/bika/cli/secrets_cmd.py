"""`bika secrets template`: the procedure's "Environment Variables Backup" page, saying for
each item whether bika keeps it in the env artifact ([secrets]) or where it must be kept."""

from __future__ import annotations

from bika import clock
from bika.cli.app import STATE, app, open_repository, repo_option
from bika.errors import BikaError
from bika.supabase.secrets import template


@app.group("secrets")
def secrets() -> None:
    """Environment secrets kept with each backup ([secrets] in bika.toml)."""


@secrets.command("template")
@repo_option
def secrets_template(repo: str | None) -> None:
    """Print the environment variables page to fill in: names bika keeps (the newest backup's
    inventory, else [secrets] env) are marked; no value is ever printed."""
    settings = STATE.settings(repo=repo)
    saved: list[str] = list(settings.secrets.env)
    if settings.repo:
        try:
            repository = open_repository(settings)
            manifests, _ = repository.scan()
            kept = [m for m in manifests if m.secrets is not None]
            if kept and kept[-1].secrets is not None:
                saved += [e.name for e in kept[-1].secrets.entries]
        except BikaError as exc:
            STATE.say(f"note: {exc}; marking only [secrets] env")
    STATE.out.print(template(clock.now().strftime("%Y-%m-%d"), saved), end="")
