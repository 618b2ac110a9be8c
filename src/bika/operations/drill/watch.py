"""Watching a parallel pg_restore: each table handed over to be fingerprinted once its rows are
committed and no step that would lock it against readers is left, so the drill reads it while
pg_restore goes on with indexes and other tables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress

from bika.postgres import catalog
from bika.postgres.archive import TocEntry
from bika.postgres.connection import ConnInfo
from bika.postgres.toc import BLOCKING_KINDS, CATALOG_KINDS

# How often the drill looks for tables whose rows pg_restore has committed.
LOAD_POLL_SECONDS = 0.2

Table = tuple[str, str]
Step = tuple[str, tuple[str, str]]
"""A catalog kind (see catalog.OBJECT_QUERIES) and the (schema, tag) it holds once the step
is done."""


def loaded_tables(
    first_seen: dict[Table, int], storage: Iterable[tuple[str, str, int]], waiting: Iterable[Table]
) -> list[Table]:
    """The tables of `waiting` (in its order) whose rows a parallel pg_restore has committed,
    given each table's storage (pg_class.relfilenode) now; `first_seen` keeps the storage each
    table had when first seen.

    A parallel pg_restore loads a table it created in one transaction that starts with
    TRUNCATE, which gives the table new storage: storage other than at first sight means the
    load committed, and nothing in a restore changes a table's rows after that. A table loaded
    before it was first seen, or loaded another way (--single-transaction, load via partition
    root), never looks loaded here: it is read once the restore is over."""
    now = {(schema, name): node for schema, name, node in storage}
    done = []
    for table in waiting:
        node = now.get(table)
        if node is None:
            continue
        if table not in first_seen:
            first_seen[table] = node
        elif node != first_seen[table]:
            done.append(table)
    return done


def blocking_steps(
    entries: Sequence[TocEntry], tables: Iterable[Table], skipped: dict[int, str]
) -> dict[Table, set[Step]]:
    """For each table, the archive's post-data steps that will lock it against readers."""
    steps: dict[Table, set[Step]] = {table: set() for table in tables}
    created = {e.dump_id: (e.namespace or "", e.tag) for e in entries if e.desc == "TABLE"}
    for entry in entries:
        if entry.desc not in BLOCKING_KINDS or entry.dump_id in skipped:
            continue
        for dependency in entry.dependencies:
            table = created.get(dependency)
            if table in steps:
                steps[table].add((CATALOG_KINDS[entry.desc], (entry.namespace or "", entry.tag)))
    return steps


def unblocked(
    tables: Iterable[Table], steps: dict[Table, set[Step]], present: dict[str, set[tuple[str, str]]]
) -> list[Table]:
    """The tables whose blocking steps are all done (their objects `present`)."""
    return [
        table
        for table in tables
        if all(key in present.get(kind, ()) for kind, key in steps.get(table, ()))
    ]


class LoadWatcher:
    """Hands each table to `on_loaded` once pg_restore has committed its rows and taken its
    last lock that would wait for a reader, so it is read while pg_restore goes on with
    indexes and other tables. Best effort: a table it does not hand over is read after the
    restore."""

    def __init__(
        self,
        conn: ConnInfo,
        tables: Sequence[Table],
        on_loaded: Callable[[list[Table]], None],
        *,
        steps: dict[Table, set[Step]] | None = None,
        enabled: bool = True,
    ) -> None:
        self._conn = conn
        self._waiting = list(tables)
        self._on_loaded = on_loaded
        self._steps = steps or {}
        self._enabled = enabled and bool(tables)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="bika-drill-loads")
        self.first_seen: dict[Table, int] = {}
        """Each table's storage when first seen."""
        self.added: set[Table] = set()
        """The tables handed over."""

    def __enter__(self) -> LoadWatcher:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()

    def _watch(self) -> None:
        loaded: list[Table] = []
        with suppress(Exception), catalog.catalog_session(self._conn) as db:
            while self._waiting and not self._stop.is_set():
                storage = db.table_storage()
                unseen = [t for t in self._waiting if t not in loaded]
                loaded += loaded_tables(self.first_seen, storage, unseen)
                kinds = {kind for table in loaded for kind, _ in self._steps.get(table, ())}
                present = db.objects(kinds)
                for table in unblocked(loaded, self._steps, present):
                    loaded.remove(table)
                    self._waiting.remove(table)
                    self._on_loaded([table])
                    self.added.add(table)
                self._stop.wait(LOAD_POLL_SECONDS)
