"""Pure rules of the snapshot code: the due rule, the binlog purge rule, retention
planning, ids and manifests, the tool's position record, progress text."""
from __future__ import annotations

import io
import threading
from datetime import datetime, timezone

import pytest

from triton_mysql.backup import manifest as mf
from triton_mysql.backup.binlogs import purge_target
from triton_mysql.backup.due import snapshot_due
from triton_mysql.backup.pipeline import binlog_position, parse_xtrabackup_info
from triton_mysql.backup.progress import Progress, human_bytes
from triton_mysql.backup.retention import plan
from triton_mysql.backup.snapshot import allocate_id
from triton_mysql.storage.local import LocalStorage

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


def manifest(**fields):
    base = {"id": "mysql-20250301T120000Z", "created": "2025-03-01T12:00:00.000Z", "source_node": "n1",
            "server_id": 7, "flavor": "mariadb", "server_version": "10.11.19-MariaDB", "tool": "mariabackup",
            "gtid": "0-7-100", "binlog_file": "mysql-bin.000004", "binlog_pos": 1234, "size": 10,
            "sha256": "a" * 64}
    base.update(fields)
    return base


def due(last, *, gtid="0-7-100", age=60.0, interval=3600.0, node="n1", server_id=7,
        binlog_file="mysql-bin.000004", start="0-7-90", flavor="mariadb"):
    now = (mf.created_time(last) if last else T0.timestamp()) + age
    return snapshot_due(last, now=now, interval=interval, flavor=flavor, gtid_now=gtid, node=node,
                        server_id=server_id, binlog_file=binlog_file, binlog_start_gtid=start)


# -- due rule --------------------------------------------------------------------------

def test_due_when_no_snapshot_exists():
    decision = due(None)
    assert decision and "no snapshot" in decision.reason


def test_not_due_without_new_transactions_even_after_interval_and_rotation():
    last = manifest()
    assert not due(last, age=10 * 86400)
    # A restart rotates the binlog but writes no transaction: not due.
    assert not due(last, binlog_file="mysql-bin.000005", start="0-7-100", age=10)


def test_not_due_before_interval_when_binlog_did_not_rotate():
    decision = due(manifest(), gtid="0-7-150", age=3599)
    assert not decision and "3599 s old" in decision.reason


def test_due_after_interval_when_gtid_moved():
    assert due(manifest(), gtid="0-7-101", age=3600)


def test_due_after_rotation_on_the_same_server_once_gtid_moved():
    last = manifest()
    assert due(last, gtid="0-7-101", binlog_file="mysql-bin.000005", start="0-7-100", age=5)
    # Same file as the snapshot: no rotation.
    assert not due(last, gtid="0-7-101", binlog_file="mysql-bin.000004", start="0-7-90", age=5)


def test_rotation_of_a_snapshot_from_another_node_is_judged_by_gtid():
    last = manifest(source_node="n2", server_id=8, binlog_file="mysql-bin.000090")
    # File names of another server mean nothing; this binlog began before the snapshot position.
    assert not due(last, gtid="0-7-101", binlog_file="mysql-bin.000002", start="0-8-95", age=5)
    # This binlog began at/after the snapshot's position: it rotated since.
    assert due(last, gtid="0-7-101", binlog_file="mysql-bin.000002", start="0-8-100", age=5)


def test_binlog_reset_on_the_same_node_falls_back_to_gtid():
    last = manifest(binlog_file="mysql-bin.000009")
    assert due(last, gtid="0-7-101", binlog_file="mysql-bin.000001", start="0-7-100", age=5)
    assert not due(last, gtid="0-7-101", binlog_file="mysql-bin.000001", start="0-7-50", age=5)


def test_due_rule_for_mysql_gtid_sets():
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    last = manifest(flavor="mysql", gtid=f"{uuid}:1-100")
    assert not due(last, flavor="mysql", gtid=f"{uuid}:1-100", start=f"{uuid}:1-90", age=86400 * 2)
    assert due(last, flavor="mysql", gtid=f"{uuid}:1-101", start=f"{uuid}:1-90", age=86400 * 2)
    assert not due(last, flavor="mysql", gtid=f"{uuid}:1-101", start=f"{uuid}:1-90", age=5)


# -- binlog purge rule -----------------------------------------------------------------------

def test_purge_keeps_the_file_holding_the_snapshot_position():
    logs = [("b.000001", ""), ("b.000002", "0-1-10"), ("b.000003", "0-1-20"), ("b.000004", "0-1-30")]
    assert purge_target("mariadb", logs, ["0-1-15"]) == "b.000002"   # 11..20 are in b.000002
    assert purge_target("mariadb", logs, ["0-1-20"]) == "b.000003"   # everything up to 20 is older
    assert purge_target("mariadb", logs, ["0-1-5"]) is None           # the first file is still needed
    assert purge_target("mariadb", logs, ["0-1-99"]) == "b.000004"   # never past the active log


def test_purge_honours_every_position_to_keep_and_unknown_domains():
    logs = [("b.1", ""), ("b.2", "0-1-10"), ("b.3", "0-1-20,1-2-5")]
    assert purge_target("mariadb", logs, ["0-1-25", "0-1-12"]) == "b.2"  # a lagging member holds b.2
    assert purge_target("mariadb", logs, ["0-1-25"]) == "b.2"            # domain 1 is not in the snapshot
    assert purge_target("mariadb", logs, ["0-1-25", ""]) is None          # a member with nothing yet
    assert purge_target("mariadb", logs, []) is None
    assert purge_target("mariadb", [("b.1", ""), ("b.2", None)], ["0-1-25"]) is None


def test_purge_rule_is_name_independent_for_mysql_sets():
    uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
    logs = [("x.000007", f"{uuid}:1-3"), ("x.000008", f"{uuid}:1-9"), ("x.000009", f"{uuid}:1-20")]
    assert purge_target("mysql", logs, [f"{uuid}:1-12"]) == "x.000008"


# -- retention and ids ------------------------------------------------------------------------

def test_retention_plan_keeps_the_newest():
    ms = [manifest(id=f"mysql-2025030{i}T000000Z") for i in range(9, 0, -1)]  # newest first
    assert plan(ms, 3) == [m["id"] for m in ms[3:]]
    assert plan(ms, 3, protect={ms[5]["id"]}) == [m["id"] for m in ms[3:] if m is not ms[5]]
    assert plan(ms[:2], 7) == []


def test_ids_and_ordering():
    assert mf.make_id("mysql", T0) == "mysql-20250301T120000Z"
    assert mf.make_id("db-1", T0, 3) == "db-1-20250301T120000Z-3"
    assert mf.id_time("db-1-20250301T120000Z-3") == T0.timestamp()
    assert mf.id_suffix("db-1-20250301T120000Z-3") == 3
    assert mf.id_time("not-an-id") is None
    same_second = [manifest(id="m-20250301T120000Z", created="2025-03-01T12:00:00.000Z"),
                   manifest(id="m-20250301T120000Z-2", created="2025-03-01T12:00:00.000Z"),
                   manifest(id="m-20250301T115959Z", created="2025-03-01T11:59:59.000Z")]
    ordered = sorted(same_second, key=mf.newest_first_key, reverse=True)
    assert [m["id"] for m in ordered] == ["m-20250301T120000Z-2", "m-20250301T120000Z", "m-20250301T115959Z"]


def test_manifest_validation():
    good = manifest()
    assert mf.decode(mf.encode(good)) == good
    for broken in ({k: v for k, v in good.items() if k != "gtid"}, {**good, "size": "10"},
                   {**good, "sha256": "xyz"}, {**good, "server_id": True}):
        with pytest.raises(mf.ManifestError):
            mf.validate(broken)
    with pytest.raises(mf.ManifestError):
        mf.decode(b"{not json")


def test_ids_allocated_in_the_same_second_are_distinct(tmp_path):
    storage = LocalStorage(f"file://{tmp_path}/b")
    got: list[str] = []
    barrier = threading.Barrier(5)

    def grab() -> None:
        barrier.wait()
        got.append(allocate_id(storage, "mysql", T0, "n"))

    threads = [threading.Thread(target=grab) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(["mysql-20250301T120000Z"] + [f"mysql-20250301T120000Z-{n}" for n in range(2, 6)])
    # A directory someone else filled without a claim is skipped too.
    storage.put_bytes("db-20250301T120000Z/manifest.json", b"{}")
    assert allocate_id(storage, "db", T0, "n") == "db-20250301T120000Z-2"


# -- the tool's record ------------------------------------------------------------------------

def test_binlog_position_from_xtrabackup_info():
    info = parse_xtrabackup_info(
        "tool_name = mariabackup\nserver_version = 10.11.19-MariaDB-log\n"
        "binlog_pos = filename 'mysql-bin.000003', position '385', GTID of the last change '0-7-4,1-9-12'\n")
    assert binlog_position(info) == ("mysql-bin.000003", 385, "0-7-4,1-9-12")
    assert info["server_version"] == "10.11.19-MariaDB-log"
    empty = parse_xtrabackup_info("binlog_pos = filename 'b.000001', position '4', GTID of the last change ''\n")
    assert binlog_position(empty) == ("b.000001", 4, "")
    assert binlog_position(parse_xtrabackup_info("tool_name = x\n")) == (None, None, "")


# -- progress ----------------------------------------------------------------------------------

def test_progress_bar_on_a_terminal_and_lines_otherwise(caplog):
    clock = [0.0]
    out = io.StringIO()
    bar = Progress("snapshot s1", 100 << 20, stream=out, tty=True, clock=lambda: clock[0])
    clock[0] = 10.0
    bar.update(50 << 20, 20 << 20)
    text = out.getvalue()
    assert "[############............]" in text and " 50%" in text
    assert "5.0 MiB/s" in text and "ETA 0:10" in text and "20.0 MiB stored" in text
    bar.finish()
    assert out.getvalue().endswith("\n")

    caplog.set_level("INFO")
    quiet = Progress("snapshot s1", None, stream=io.StringIO(), tty=False, clock=lambda: clock[0])
    clock[0] = 12.0
    quiet.update(1 << 29, 1 << 28)  # within 5 s of the start: no line yet
    clock[0] = 15.0
    quiet.update(1 << 30, 1 << 29)
    clock[0] = 16.0
    quiet.update(2 << 30, 1 << 29)  # within 5 s of the last line: no new line
    assert [r.getMessage() for r in caplog.records if "progress" in r.getMessage()] == [
        "snapshot s1 progress: 1.0 GiB, 512.0 MiB stored, 204.8 MiB/s"]
    assert human_bytes(1536) == "1.5 KiB"
