"""Notifications: alerts to Slack, email, Telegram, webhooks… through apprise, and the
dead-man's switch ping (healthchecks.io style). A notification that fails is logged, never
raised: it must not fail the backup it reports on.

What to send is decided by `transition`, a pure function: on a change of state only (OK →
critical alerts, critical → OK says "recovered"), so a check every five minutes does not page
anyone every five minutes.
"""

from __future__ import annotations

import logging
import urllib.request
from dataclasses import dataclass
from typing import Literal

from bika.postgres.connection import redact

log = logging.getLogger("bika.notify")

Status = Literal["OK", "WARNING", "CRITICAL", "UNKNOWN"]


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    kind: Literal["failure", "warning", "success", "info"]


def transition(
    previous: Status | None, current: Status, repository: str, summary: str
) -> Message | None:
    """What to say when `bika check` moves from `previous` (None: never checked) to `current`."""
    if previous == current or (previous is None and current == "OK"):
        return None
    if current == "OK":
        return Message(
            f"bika: backups recovered ({repository})", f"was {previous}: now OK", "success"
        )
    kind: Literal["failure", "warning"] = "failure" if current == "CRITICAL" else "warning"
    return Message(f"bika: backups {current} ({repository})", summary, kind)


def send(urls: list[str], message: Message) -> bool:
    """Send to every URL; True when all took it. Failures are logged, not raised."""
    if not urls:
        return True
    import apprise  # here: it takes a twentieth of a second to import, `bika check` often not

    sender = apprise.Apprise()
    for url in urls:
        if not sender.add(url):
            log.warning("notify: %s is not a notification URL apprise knows", _shown(url))
    try:
        sent = bool(sender.notify(body=message.body, title=message.title, notify_type=message.kind))
    except Exception as exc:  # apprise's plugins raise what their libraries raise
        log.warning("notify: sending failed: %s", redact(str(exc)))
        return False
    if not sent:
        log.warning("notify: at least one notification could not be delivered")
    return sent


def ping(url: str | None, failed: bool = False, timeout: float = 10.0) -> bool:
    """The dead-man's switch: GET url after a successful backup, url/fail after a failed one
    (healthchecks.io's convention), so an outside service notices when bika stops running."""
    if not url:
        return True
    target = url.rstrip("/") + ("/fail" if failed else "")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as reply:
            return bool(200 <= reply.status < 300)
    except OSError as exc:
        log.warning("heartbeat: %s did not answer: %s", _shown(url), exc)
        return False


def _shown(url: str) -> str:
    """A notification URL carries its tokens anywhere (slack://T/B/C): show its scheme only."""
    return f"{url.partition('://')[0]}://…"
