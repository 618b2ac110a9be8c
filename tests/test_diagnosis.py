"""The doctor's rules, on plain facts: what is a warning, what fails, and which command fixes it."""

from __future__ import annotations

from bika.diagnosis import (
    DatabaseFacts,
    GiB,
    StorageFacts,
    diagnose,
    failed,
)
from bika.findings import Finding
from bika.storage import gcs, s3
from bika.storage.facts import BucketFacts, LifecycleRule, Setting

ON = Setting("on")
OFF = Setting("off", "off")


def s3_bucket(**changes: object) -> BucketFacts:
    values: dict[str, object] = {
        "versioning": ON,
        "encryption": Setting("on", "aws:kms"),
        "lifecycle": ON,
        "rules": (LifecycleRule("bika", "repo/", deletes_noncurrent=True, aborts_uploads=True),),
        "logging": ON,
        "retention": ON,
        "storage_classes": s3.STORAGE_CLASSES,
        "sealed_classes": s3.SEALED_CLASSES,
    }
    values.update(changes)
    backend = values.pop("backend", "s3")
    return BucketFacts(backend, "backups", "repo", None, **values)  # type: ignore[arg-type]


def checks_of(bucket: BucketFacts, **changes: object) -> dict[str, Finding]:
    values: dict[str, object] = {"repository": "ok", "writable": True, "bucket": bucket}
    values.update(changes)
    facts = StorageFacts("s3://backups/repo", "s3", reachable=True, **values)  # type: ignore[arg-type]
    return {c.what: c for c in diagnose(facts, None)}


def test_a_well_kept_bucket_is_all_ok() -> None:
    checks = checks_of(s3_bucket())
    assert {c.level for c in checks.values()} == {"ok"}
    assert not failed(list(checks.values()))


def test_missing_protections_are_warnings_with_the_command_that_fixes_them() -> None:
    checks = checks_of(
        s3_bucket(versioning=Setting("off", "suspended"), logging=OFF, lifecycle=OFF, rules=())
    )
    assert checks["versioning"].level == "warn"
    assert checks["versioning"].fix == (
        "aws s3api put-bucket-versioning --bucket backups --versioning-configuration Status=Enabled"
    )
    assert "put-bucket-logging --bucket backups" in checks["access logging"].fix
    assert '"Prefix":"repo/"' in checks["lifecycle rules"].fix
    assert not failed(list(checks.values()))


def test_a_rule_that_expires_current_objects_is_a_warning() -> None:
    eager = LifecycleRule("eager", "", deletes_current_after_days=3)
    other = LifecycleRule("logs", "logs/", deletes_current_after_days=1)  # not our prefix
    checks = checks_of(s3_bucket(rules=(eager, other)))
    assert checks["lifecycle rules"].level == "warn"
    assert "'eager' deletes objects 3 days" in checks["lifecycle rules"].message
    assert checks["upload cleanup"].level == "info"


def test_unreachable_or_unwritable_storage_fails() -> None:
    down = StorageFacts("s3://b/r", "s3", reachable=False, reach_error="Connection refused")
    assert [c.level for c in diagnose(down, None)] == ["error"]
    read_only = checks_of(s3_bucket(), writable=False, write_detail="AccessDenied")
    assert read_only["writable"].level == "error"
    assert failed(list(read_only.values()))


def test_settings_that_cannot_be_read_are_unknown_not_failures() -> None:
    why = Setting("unknown", "not allowed to read it (s3:GetBucketVersioning)")
    checks = checks_of(s3_bucket(versioning=why))
    assert checks["versioning"].level == "unknown"
    assert "s3:GetBucketVersioning" in checks["versioning"].message
    assert not failed(list(checks.values()))


def test_storage_classes_are_checked_against_the_backend() -> None:
    typo = checks_of(s3_bucket(), classes={"monthly": "GLACIER-IR"})
    assert typo["storage classes"].level == "warn"
    sealed = checks_of(s3_bucket(), classes={"monthly": "DEEP_ARCHIVE"})
    assert sealed["storage classes"].level == "info"
    assert "rehydrated" in sealed["storage classes"].message
    # GCS reads ARCHIVE at once, and names no GLACIER
    in_gcs = s3_bucket(
        backend="gcs", storage_classes=gcs.STORAGE_CLASSES, sealed_classes=frozenset()
    )
    assert checks_of(in_gcs, classes={"monthly": "archive"})["storage classes"].level == "ok"
    assert checks_of(in_gcs, classes={"monthly": "GLACIER"})["storage classes"].level == "warn"
    local = StorageFacts(
        "/srv/bika",
        "local",
        reachable=True,
        repository="ok",
        writable=True,
        free_bytes=100 * GiB,
        classes={"monthly": "GLACIER_IR"},
    )
    by_name = {c.what: c for c in diagnose(local, None)}
    assert by_name["storage classes"].level == "info"


def test_free_space_wants_room_for_two_more_backups() -> None:
    def space(free: int, newest: int | None) -> str:
        facts = StorageFacts(
            "/srv/bika",
            "local",
            reachable=True,
            repository="ok",
            writable=True,
            free_bytes=free,
            newest_backup_bytes=newest,
        )
        return {c.what: c for c in diagnose(facts, None)}["free space"].level

    assert space(10 * GiB, 2 * GiB) == "ok"
    assert space(3 * GiB, 2 * GiB) == "warn"
    assert space(GiB // 2, None) == "warn"


def test_database_checks() -> None:
    good = DatabaseFacts(
        "postgresql://u@db/app", True, server_version="17.2", pg_dump_version="18.6", encrypted=True
    )
    assert [c.level for c in diagnose(None, good)] == ["ok", "ok", "ok"]
    old_tools = DatabaseFacts(
        "postgresql://u@db/app", True, server_version="17.2", pg_dump_version="15.8"
    )
    checks = {c.what: c for c in diagnose(None, old_tools)}
    assert checks["pg_dump"].level == "error" and "pg_bin_dir" in checks["pg_dump"].fix
    clear = DatabaseFacts(
        "postgresql://u@db/app",
        True,
        server_version="17.2",
        pg_dump_version="18.6",
        encrypted=False,
    )
    checks = {c.what: c for c in diagnose(None, clear)}
    assert (
        checks["database TLS"].level == "warn" and "sslmode=require" in checks["database TLS"].fix
    )
    down = DatabaseFacts("postgresql://u@db/app", False, error="cannot connect")
    assert failed(diagnose(None, down))
