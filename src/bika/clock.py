"""The current time, from one place, so tests can move it.

BIKA_NOW (tests only: an ISO 8601 time, e.g. 2026-12-24T02:00:00Z) fixes what now() returns:
the tests take backups "in" the past and prune "in" the future with it. Never set it in
production: backups would carry that time, and prune would judge ages by it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from bika.errors import ConfigError

TEST_CLOCK = "BIKA_NOW"


def now() -> datetime:
    fixed = os.environ.get(TEST_CLOCK)
    if not fixed:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(fixed)
    except ValueError:
        raise ConfigError(
            f"{TEST_CLOCK}={fixed!r} is not an ISO 8601 time; it is for tests only: unset it"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
