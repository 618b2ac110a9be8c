"""The sample database of `bika demo` and the tests: a savings-group (ibimina) database of a few
MB (its SQL is package data, savings_group.sql), with a loader for any such script.
"""

from __future__ import annotations

from importlib import resources

import psycopg

# The script is deterministic: the same SQL gives the same rows (and the same identity and
# sequence values) on every run and on PostgreSQL 15 to 18. Pseudo-random choices come from md5
# of a label and ids through a temporary function, pg_temp.h, that vanishes with the session.
# It uses no now(), random(), server-assigned oids or anything newer than PostgreSQL 15.

SAVINGS_GROUP_SQL: str = (
    resources.files(__package__).joinpath("savings_group.sql").read_text("utf-8")
)

SAVINGS_GROUP_TABLES: tuple[tuple[str, str], ...] = (
    ("public", "groups"),
    ("public", "members"),
    ("public", "contributions"),
    ("public", "loans"),
    ("public", "repayments"),
)
"""Every table of SAVINGS_GROUP_SQL; all hold rows."""


def load(url: str, sql: str) -> None:
    """Run sql (a script such as SAVINGS_GROUP_SQL) against the database at url in one
    transaction."""
    with psycopg.connect(url, autocommit=False, client_encoding="UTF8") as conn:
        conn.execute(sql)
