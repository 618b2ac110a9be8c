"""The sample databases load on PostgreSQL 15 and 18, hold the tables their constants name with
the expected rows, and are deterministic: two loads, even on different versions, are identical.
"""

from __future__ import annotations

from collections.abc import Callable

import awkward
import psycopg
from psycopg import sql

from bika.postgres import sample
from bika.postgres.cluster import Cluster

Table = tuple[str, str]

SAVINGS_ROWS: dict[Table, int] = {
    ("public", "groups"): 40,
    ("public", "members"): 1000,
    ("public", "contributions"): 24397,
    ("public", "loans"): 2044,
    ("public", "repayments"): 11349,
}

AWKWARD_ROWS: dict[Table, int] = {
    ("public", "texts"): 120,
    ("public", "blobs"): 8,
    ("public", "measurements"): 8,
    ("ledger", "accounts"): 120,
    ("ledger", "audit_log"): 121,
    ("Ibimina Ltd", "Members"): 60,
    ("Ibimina Ltd", "members"): 2,
    ("ledger", "payments_2023"): 92,
    ("public", "payments_2024"): 91,
    ("public", "payments_default"): 57,
    ("public", "secrets"): 3,
    ("public", "documents"): 4,
    ("ledger", "pending_transfers"): 0,
    ("public", "session_cache"): 3,
    ("public", "misc_types"): 3,
}

_USER_RELATIONS = """
    SELECT n.nspname, c.relname
    FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
    WHERE c.relkind = %s
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
      AND n.nspname NOT LIKE 'pg_temp%%'
"""

Fingerprint = dict[str, tuple[object, ...]]


def _fingerprint(url: str, relations: tuple[Table, ...]) -> Fingerprint:
    """Row count and md5 of every row's text of each relation, plus large objects and
    sequence states: equal fingerprints mean equal data."""
    found: Fingerprint = {}
    with psycopg.connect(url) as conn:
        for schema, name in relations:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n'"
                " ORDER BY t::text COLLATE \"C\"), '')) FROM {} AS t"
            ).format(sql.Identifier(schema, name))
            row = conn.execute(query).fetchone()
            assert row is not None
            found[f"{schema}.{name}"] = tuple(row)
        found["large objects"] = tuple(
            conn.execute(
                "SELECT oid, md5(lo_get(oid)), obj_description(oid, 'pg_largeobject')"
                " FROM pg_largeobject_metadata ORDER BY oid"
            ).fetchall()
        )
        found["sequences"] = tuple(
            conn.execute(
                "SELECT schemaname, sequencename, last_value, start_value, increment_by"
                " FROM pg_sequences ORDER BY 1, 2"
            ).fetchall()
        )
    return found


def _counts(found: Fingerprint) -> dict[Table, int]:
    counts: dict[Table, int] = {}
    for key, value in found.items():
        if "." in key:
            schema, name = key.split(".", 1)
            count = value[0]
            assert isinstance(count, int)
            counts[(schema, name)] = count
    return counts


def _relations(url: str, relkind: str) -> set[Table]:
    with psycopg.connect(url) as conn:
        return {(s, n) for s, n in conn.execute(_USER_RELATIONS, (relkind,)).fetchall()}


def test_savings_group_loads_deterministically(
    pg: Cluster, new_database: Callable[[Cluster], str]
) -> None:
    first, second = new_database(pg), new_database(pg)
    sample.load(first, sample.SAVINGS_GROUP_SQL)
    sample.load(second, sample.SAVINGS_GROUP_SQL)

    assert _relations(first, "r") == set(sample.SAVINGS_GROUP_TABLES)
    found = _fingerprint(first, sample.SAVINGS_GROUP_TABLES)
    assert _counts(found) == SAVINGS_ROWS
    assert found == _fingerprint(second, sample.SAVINGS_GROUP_TABLES)

    # A few MB, as `bika demo` promises: measured against an empty database.
    with psycopg.connect(first) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()) - pg_database_size('template1')"
        ).fetchone()
    assert row is not None
    assert 3_000_000 <= row[0] <= 7_000_000


def test_awkward_loads_deterministically(
    pg: Cluster, new_database: Callable[[Cluster], str]
) -> None:
    first, second = new_database(pg), new_database(pg)
    sample.load(first, awkward.SQL)
    sample.load(second, awkward.SQL)

    # The constants name every table that holds (or could hold) data, leaves not parents.
    assert _relations(first, "r") == set(awkward.TABLES)
    assert _relations(first, "p") == {("public", "payments")}
    assert _relations(first, "m") == set(awkward.MATERIALIZED_VIEWS)

    relations = awkward.TABLES + awkward.MATERIALIZED_VIEWS
    found = _fingerprint(first, relations)
    counts = _counts(found)
    assert {t: counts[t] for t in awkward.TABLES} == AWKWARD_ROWS
    for table in awkward.TABLES:
        assert (counts[table] == 0) == (table in awkward.EMPTY_TABLES)
    assert counts[("ledger", "monthly_totals")] > 0
    large_objects = [row for row in found["large objects"] if isinstance(row, tuple)]
    assert [row[0] for row in large_objects] == list(awkward.LARGE_OBJECTS)
    assert found == _fingerprint(second, relations)

    with psycopg.connect(first) as conn:
        # Spot checks that the awkward values arrived as meant, not merely consistently.
        row = conn.execute(
            "SELECT body, note, code FROM public.texts WHERE label = 'copy end marker'"
        ).fetchone()
        assert row == ("\\.", "\\.", "\\.    ")
        row = conn.execute(
            "SELECT body IS NULL, note FROM public.texts WHERE label = 'empty strings'"
        ).fetchone()
        assert row == (False, "")
        row = conn.execute(
            "SELECT data, tags, doc = 'null'::jsonb FROM public.blobs WHERE label = 'zero byte'"
        ).fetchone()
        assert row == (b"\x00", ["a", None, "", "NULL"], True)
        row = conn.execute(
            "SELECT f8::text, exact::text FROM public.measurements WHERE label = 'not a number'"
        ).fetchone()
        assert row == ("-0", "NaN")
        row = conn.execute(
            "SELECT length(lo_get(content)) FROM public.documents WHERE title = 'empty.txt'"
        ).fetchone()
        assert row == (0,)
        row = conn.execute(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'public.secrets'::regclass"
        ).fetchone()
        assert row == (True,)
        row = conn.execute(
            "SELECT convalidated FROM pg_constraint"
            " WHERE conname = 'accounts_balance_below_million'"
        ).fetchone()
        assert row == (False,)


def test_same_rows_on_15_and_18(
    pg15: Cluster, pg18: Cluster, new_database: Callable[[Cluster], str]
) -> None:
    for script, tables in (
        (sample.SAVINGS_GROUP_SQL, sample.SAVINGS_GROUP_TABLES),
        (awkward.SQL, awkward.TABLES + awkward.MATERIALIZED_VIEWS),
    ):
        on15, on18 = new_database(pg15), new_database(pg18)
        sample.load(on15, script)
        sample.load(on18, script)
        assert _fingerprint(on15, tables) == _fingerprint(on18, tables)
