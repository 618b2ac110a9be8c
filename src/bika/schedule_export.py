"""The schedule as the platform's own scheduler reads it: systemd timers, a crontab, a
Kubernetes CronJob, a GitHub Actions workflow. Pure text, for users who prefer those to
`bika daemon`; each runs the same chain (`bika backup` then `bika prune`, …) at the same times.
"""

from __future__ import annotations

import shlex

from bika.schedule import Job, ScheduleConfig

FORMATS = ("systemd", "cron", "kubernetes", "github-actions")
_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def chain(job: Job, bika: str, config: str | None) -> str:
    """The shell command of a job: its steps joined with &&, so a failed backup prunes nothing."""
    where = ["--config", config] if config else []
    return " && ".join(shlex.join([bika, *step, *where]) for step in job.steps)


def on_calendar(cron: str, timezone: str) -> str:
    """systemd's OnCalendar= for a five-field cron expression (numbers, lists, ranges, steps)."""
    minute, hour, day, month, weekday = cron.split()

    def field(value: str) -> str:
        if value == "*":
            return "*"
        parts = []
        for part in value.split(","):
            base, _, step = part.partition("/")
            base = "0" if base == "*" and step else base.replace("-", "..")
            parts.append(f"{base}/{step}" if step else base)
        return ",".join(parts)

    days = ""
    if weekday != "*":
        names = []
        for part in weekday.split(","):
            first, _, last = part.partition("-")
            names.append(f"{_DAYS[int(first)]}..{_DAYS[int(last)]}" if last else _DAYS[int(part)])
        days = ",".join(names) + " "
    return f"{days}*-{field(month)}-{field(day)} {field(hour)}:{field(minute)}:00 {timezone}"


def export(
    fmt: str,
    jobs: list[Job],
    config: ScheduleConfig,
    *,
    bika: str = "bika",
    config_file: str | None = None,
) -> str:
    """The whole schedule in one of FORMATS."""
    if fmt == "systemd":
        return "\n".join(_systemd(job, config.timezone, bika, config_file) for job in jobs)
    if fmt == "cron":
        lines = [
            "# bika's schedule (crontab -e); times in " + config.timezone,
            f"CRON_TZ={config.timezone}",
        ]
        lines += [f"{job.cron} {chain(job, bika, config_file)}" for job in jobs]
        return "\n".join(lines) + "\n"
    if fmt == "kubernetes":
        return "---\n".join(_cronjob(job, config.timezone, config_file) for job in jobs)
    if fmt == "github-actions":
        return _workflow(jobs, config.timezone)
    raise ValueError(fmt)


def _systemd(job: Job, timezone: str, bika: str, config_file: str | None) -> str:
    unit = f"bika-{job.name}"
    return f"""# /etc/systemd/system/{unit}.service
[Unit]
Description=bika {job.name}
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c {shlex.quote(chain(job, bika, config_file))}
# SIGTERM stops a backup cleanly: nothing half-done stays visible
KillSignal=SIGTERM
TimeoutStopSec=120

# /etc/systemd/system/{unit}.timer
[Unit]
Description=bika {job.name} on schedule

[Timer]
OnCalendar={on_calendar(job.cron, timezone)}
# a run missed while the machine was off runs once at boot
Persistent=true

[Install]
WantedBy=timers.target
# enable with: systemctl daemon-reload && systemctl enable --now {unit}.timer
"""


def _cronjob(job: Job, timezone: str, config_file: str | None) -> str:
    command = chain(job, "bika", config_file)
    return f"""apiVersion: batch/v1
kind: CronJob
metadata:
  name: bika-{job.name}
spec:
  schedule: "{job.cron}"
  timeZone: "{timezone}"
  concurrencyPolicy: Forbid   # never two runs of a job at once
  startingDeadlineSeconds: 3600
  jobTemplate:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: bika
              # an image with bika installed (pip install bika); bika.toml and the
              # secrets (DATABASE_URL, BIKA_REPO, cloud credentials) from a Secret
              image: YOUR_REGISTRY/bika:latest
              command: ["/bin/sh", "-c", {_yaml_string(command)}]
              envFrom:
                - secretRef:
                    name: bika-env
"""


def _workflow(jobs: list[Job], timezone: str) -> str:
    note = "" if timezone == "UTC" else f"  # GitHub runs schedules in UTC, not {timezone}\n"
    crons = "".join(f'    - cron: "{job.cron}"\n' for job in jobs)
    steps = "".join(
        f"      - name: bika {job.name}\n"
        f"        if: github.event.schedule == '{job.cron}' || github.event_name =="
        " 'workflow_dispatch'\n"
        f"        run: {chain(job, 'bika', None)}\n"
        for job in jobs
    )
    return f"""# .github/workflows/bika.yml
name: bika
on:
  schedule:
{crons}{note}  workflow_dispatch: {{}}
concurrency:
  group: bika
  cancel-in-progress: false
jobs:
  bika:
    runs-on: ubuntu-latest
    env:
      DATABASE_URL: ${{{{ secrets.DATABASE_URL }}}}
      BIKA_REPO: ${{{{ secrets.BIKA_REPO }}}}
      BIKA_RECIPIENTS: ${{{{ secrets.BIKA_RECIPIENTS }}}}
      AWS_ACCESS_KEY_ID: ${{{{ secrets.AWS_ACCESS_KEY_ID }}}}
      AWS_SECRET_ACCESS_KEY: ${{{{ secrets.AWS_SECRET_ACCESS_KEY }}}}
    steps:
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      - run: pip install bika
{steps}"""


def _yaml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
