"""Snapshot and restore throughput against the raw tools.  `python -m bench.snapshot_restore [--size-mb N]`

Starts a real MariaDB server with about N MB of table data (half random
bytes, half text: zstd gets ~2:1) and a real S3 server (moto), then, for
file:// and s3://, alternates >= 5 runs of

* snapshot, ours: `take_snapshot()` in a child process (lock-free, no
  discovery: id claim, mariabackup | zstd -1 -T0 | sha256 + storage,
  manifest, retention, binlog purge), against the raw pipe
  `mariabackup --backup --stream=xbstream | zstd -1 -T0 > /dev/null`
  (same mariabackup arguments); for file:// also against that pipe written to
  a file and fsynced (what storing the object costs on this disk);
* restore, ours: `restore()` in a child process (storage → sha256/size →
  zstd -d | mbstream -x → prepare → move → chown), against the raw
  `zstd -d < file | mbstream -x` + `mariabackup --prepare` + `--move-back`
  from a local copy of the same object.

It reports median and max seconds, MB/s of datadir (snapshot) or of the
stored object (restore), the ratios raw/ours of the medians measured in
this run (goals: snapshot >= 80 %, restore >= 70 %); for s3:// also against
the same tools with boto3's own transfer (upload_fileobj from the pipe, a plain
GET into zstd), to separate the transport's cost from ours; and the peak RSS of the
hook process (VmHWM of the child running our code, the tools excluded)
at half the size and at the full size, to show it does not grow with the
data.  Exits non-zero when something could not be measured.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import emit, stop_on_sigterm

GOAL_SNAPSHOT = 0.80
GOAL_RESTORE = 0.70


# -- children: our code in its own process, so its peak RSS is its own ---------------------

def _child(kind: str, params: dict) -> dict:
    os.environ.update(params.get("env", {}))
    from triton_mysql.config import Config
    from triton_mysql.storage import open_storage

    config = Config.from_env(params["config"])
    storage = open_storage(config.backup_url, config)
    start = time.monotonic()
    if kind == "snapshot":
        from triton_mysql.backup.snapshot import take_snapshot
        manifest = take_snapshot(config, storage=storage)
        out = {"id": manifest["id"], "size": manifest["size"]}
    else:
        from triton_mysql.backup.restore import restore
        manifest = restore(storage, params["id"], params["datadir"])
        out = {"id": manifest["id"], "size": manifest["size"]}
    out["seconds"] = time.monotonic() - start
    out["maxrss_kib"] = peak_rss_kib()
    return out


def peak_rss_kib() -> int:
    """This process's own peak RSS (VmHWM).  Not ru_maxrss: Linux carries the parent's
    high-water mark across fork+exec into it, so a child of a big parent looks big."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(kind: str, params: dict) -> dict:
    result = subprocess.run([sys.executable, "-m", "bench.snapshot_restore", "--child", kind, json.dumps(params)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=1800,
                            cwd=Path(__file__).resolve().parent.parent)
    if result.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the raw tools ------------------------------------------------------------------------------

def raw_snapshot(server, work: Path, upload=None) -> float:
    """mariabackup --backup --stream=xbstream (our arguments) | zstd -1 -T0 > /dev/null.

    With `upload(fileobj)`, zstd's output goes there instead of /dev/null (the
    S3 reference: boto3's own transfer manager reading the pipe).
    """
    from triton_mysql.backup.pipeline import write_client_cnf
    from triton_mysql.mysql.flavor import MARIADB

    scratch = Path(tempfile.mkdtemp(dir=work, prefix="raw-"))
    try:
        (scratch / "target").mkdir()
        (scratch / "lsn").mkdir()
        write_client_cnf(scratch / "backup.cnf", str(server.cnf_path), server.socket, None)
        argv = MARIADB.backup_argv(str(scratch / "backup.cnf"), str(scratch / "target"),
                                   [f"--extra-lsndir={scratch / 'lsn'}", f"--datadir={server.datadir}"])
        with open(scratch / "tool.log", "wb") as log:
            start = time.monotonic()
            backup = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log)
            zstd = subprocess.Popen(["zstd", "-1", "-T0", "-q", "-c"], stdin=backup.stdout,
                                    stdout=subprocess.PIPE if upload else subprocess.DEVNULL)
            backup.stdout.close()
            if upload is not None:
                upload(zstd.stdout)
                zstd.stdout.close()
            codes = zstd.wait(), backup.wait()
            seconds = time.monotonic() - start
        if codes != (0, 0):
            raise RuntimeError(f"raw snapshot pipe failed {codes}: {(scratch / 'tool.log').read_text()[-500:]}")
        return seconds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def raw_restore(object_path: Path | None, work: Path, download=None) -> float:
    """zstd -d < object | mbstream -x, then mariabackup --prepare and --move-back.

    With `download(pipe)`, the object is streamed into zstd by it instead (the
    S3 reference: a plain boto3 GET, no verification).
    """
    from triton_mysql.mysql.flavor import MARIADB

    scratch = Path(tempfile.mkdtemp(dir=work, prefix="raw-restore-"))
    try:
        target, datadir = scratch / "backup", scratch / "data"
        target.mkdir()
        datadir.mkdir()
        cnf = scratch / "move.cnf"
        cnf.write_text(f"[mysqld]\ndatadir={datadir}\n")
        start = time.monotonic()
        source = open(object_path, "rb") if download is None else subprocess.PIPE
        try:
            zstd = subprocess.Popen(["zstd", "-d", "-q", "-c"], stdin=source, stdout=subprocess.PIPE)
            extract = subprocess.Popen(MARIADB.extract_argv(str(target)), stdin=zstd.stdout)
            zstd.stdout.close()
            if download is not None:
                download(zstd.stdin)
                zstd.stdin.close()
            codes = [zstd.wait(), extract.wait()]
        finally:
            if download is None:
                source.close()
        for argv in (MARIADB.prepare_argv(str(target)), MARIADB.move_back_argv(str(cnf), str(target))):
            codes.append(subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode)
        seconds = time.monotonic() - start
        if any(codes):
            raise RuntimeError(f"raw restore failed: exit codes {codes}")
        return seconds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# -- setup ----------------------------------------------------------------------------------------

def fill_to(server, megabytes: int) -> None:
    """Rows of ~1 KB (500 random bytes + 500 bytes of text) up to `megabytes` MB."""
    server.sql("CREATE DATABASE IF NOT EXISTS bench")
    server.sql("CREATE TABLE IF NOT EXISTS bench.rows (id INT AUTO_INCREMENT PRIMARY KEY, "
               "noise VARBINARY(512), words VARCHAR(600)) ENGINE=InnoDB")
    want = megabytes * 1024
    have = int(server.scalar("SELECT COUNT(*) FROM bench.rows"))
    while have < want:
        batch = min(max(have, 1024), want - have, 200_000)
        server.sql("INSERT INTO bench.rows (noise, words) SELECT RANDOM_BYTES(500), "
                   "CONCAT_WS(' ', seq, REPEAT('the quick brown fox jumps over the lazy dog ', 11)) "
                   f"FROM bench.seq_1_to_{batch}")
        have += batch


def datadir_bytes(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "max": max(values), "runs": len(values)}


def measure_backend(name: str, url: str, env: dict, server, work: Path, runs: int, storage_env: dict) -> dict:
    """Alternate raw and ours for snapshots, then for restores; return the numbers."""
    from triton_mysql.backup.manifest import data_key
    from triton_mysql.config import Config
    from triton_mysql.storage import open_storage

    params = {"config": env, "env": storage_env}
    os.environ.update(storage_env)
    config = Config.from_env(env)
    storage = open_storage(url, config)
    upload = download = None
    uploaded: list[str] = []  # reference objects, deleted after each timed run (moto keeps objects in memory)
    if name == "s3":  # references through boto3 itself, for the transport's share
        client, bucket = storage.client, storage.bucket
        storage.ensure_bucket()

        def upload(pipe) -> None:
            key = f"reference/{uuid.uuid4().hex}"
            client.upload_fileobj(pipe, bucket, key)
            uploaded.append(key)

    to_file = None
    if name == "file":  # the raw pipe written to a file and fsynced: what storing costs on this disk

        def to_file(pipe) -> None:
            target = work / f"raw-to-file-{uuid.uuid4().hex}.zst"
            with open(target, "wb") as out:
                shutil.copyfileobj(pipe, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            target.unlink()

    snap_raw, snap_ours, snap_ref, rss_snapshot, snap_file = [], [], [], [], []
    last = None
    for _ in range(runs):
        snap_raw.append(raw_snapshot(server, work))
        if to_file is not None:
            snap_file.append(raw_snapshot(server, work, to_file))
        if upload is not None:
            snap_ref.append(raw_snapshot(server, work, upload))
            while uploaded:
                storage.client.delete_object(Bucket=storage.bucket, Key=uploaded.pop())
        last = run_child("snapshot", params)
        snap_ours.append(last["seconds"])
        rss_snapshot.append(last["maxrss_kib"])
    assert last is not None
    # A local copy of the newest object for the raw restore.
    local_object = work / f"{name}-object.zst"
    with open(local_object, "wb") as f:
        for chunk in storage.get_stream(data_key(last["id"])):
            f.write(chunk)
    if name == "s3":
        full_key = storage.full_key(data_key(last["id"]))

        def download(pipe) -> None:
            body = storage.client.get_object(Bucket=storage.bucket, Key=full_key)["Body"]
            for chunk in iter(lambda: body.read(1 << 20), b""):
                pipe.write(chunk)

    rest_raw, rest_ours, rest_ref, rss_restore = [], [], [], []
    for i in range(runs):
        rest_raw.append(raw_restore(local_object, work))
        if download is not None:
            rest_ref.append(raw_restore(None, work, download))
        target = work / f"{name}-restore-{i}" / "data"
        result = run_child("restore", {**params, "id": last["id"], "datadir": str(target)})
        rest_ours.append(result["seconds"])
        rss_restore.append(result["maxrss_kib"])
        shutil.rmtree(target.parent, ignore_errors=True)
    local_object.unlink()
    out = {"snapshot_raw": summary(snap_raw), "snapshot_ours": summary(snap_ours),
           "restore_raw": summary(rest_raw), "restore_ours": summary(rest_ours),
           "object_bytes": last["size"], "rss_snapshot_kib": max(rss_snapshot), "rss_restore_kib": max(rss_restore)}
    if snap_file:
        out["snapshot_to_file"] = summary(snap_file)
    if snap_ref:
        out["snapshot_reference"] = summary(snap_ref)
        out["restore_reference"] = summary(rest_ref)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=256, help="table data to back up (default 256)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each measurement (>= 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], json.loads(args.child[1]))))
        return 0
    if args.runs < 5:
        parser.error("--runs must be at least 5")
    stop_on_sigterm()
    for tool in ("mariabackup", "mbstream", "zstd"):
        if shutil.which(tool) is None:
            print(f"cannot measure: {tool} is not installed", file=sys.stderr)
            return 1

    from tests.harness.mariadb import start_servers, stop_all
    from tests.harness.s3 import S3Server

    work = Path(tempfile.mkdtemp(prefix="bench-snapshot-"))
    servers, s3 = [], None
    try:
        servers = start_servers(work / "mariadb", 1)
        server = servers[0]
        s3 = S3Server(work / "s3").start()
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        backends = {
            "file": (f"file://{work}/backups", {}),
            "s3": (f"s3://{bucket}/snapshots", {**s3.env(), "S3_CREATE_BUCKET": "true"}),
        }

        def env_for(url: str, extra: dict) -> dict:
            return {"NODE_NAME": "bench", "BACKUP_URL": url, "MYSQL_SOCKET": server.socket,
                    "MYSQL_CNF": str(server.cnf_path), "MYSQL_DATADIR": str(server.datadir), "SNAPSHOT_KEEP": "2",
                    **extra}

        # Peak RSS at half the size first: it must not grow with the data.
        fill_to(server, max(1, args.size_mb // 2))
        rss_small = {}
        for name, (url, extra) in backends.items():
            rss_small[name] = run_child("snapshot", {"config": env_for(url, extra), "env": s3.env()})["maxrss_kib"]
        fill_to(server, args.size_mb)
        source_bytes = datadir_bytes(server.datadir)

        results = {}
        for name, (url, extra) in backends.items():
            results[name] = measure_backend(name, url, env_for(url, extra), server, work, args.runs, s3.env())
            results[name]["rss_snapshot_small_kib"] = rss_small[name]
    except Exception as exc:  # noqa: BLE001 - report, exit non-zero
        print(f"cannot measure: {exc}", file=sys.stderr)
        emit("snapshot", {}, ok=False, error=f"{type(exc).__name__}: {exc}",
             settings={"size_mb": args.size_mb, "runs": args.runs})
        return 1
    finally:
        if s3 is not None:
            s3.stop()
        stop_all(servers)
        shutil.rmtree(work, ignore_errors=True)

    report = {"size_mb": args.size_mb, "datadir_bytes": source_bytes, "runs": args.runs, "backends": {}}
    ok = True
    for name, r in results.items():
        snap_ratio = r["snapshot_raw"]["median"] / r["snapshot_ours"]["median"]
        rest_ratio = r["restore_raw"]["median"] / r["restore_ours"]["median"]
        ok &= snap_ratio > 0 and rest_ratio > 0
        report["backends"][name] = {
            **r,
            "snapshot_ratio": round(snap_ratio, 3), "restore_ratio": round(rest_ratio, 3),
            "snapshot_mb_s": round(source_bytes / r["snapshot_ours"]["median"] / 1e6, 1),
            "restore_mb_s": round(r["object_bytes"] / r["restore_ours"]["median"] / 1e6, 1),
            "snapshot_goal_met": snap_ratio >= GOAL_SNAPSHOT, "restore_goal_met": rest_ratio >= GOAL_RESTORE,
        }
        if "snapshot_to_file" in r:
            report["backends"][name]["snapshot_ratio_vs_file"] = round(
                r["snapshot_to_file"]["median"] / r["snapshot_ours"]["median"], 3)
        if "snapshot_reference" in r:
            report["backends"][name]["snapshot_ratio_vs_boto3"] = round(
                r["snapshot_reference"]["median"] / r["snapshot_ours"]["median"], 3)
            report["backends"][name]["restore_ratio_vs_boto3"] = round(
                r["restore_reference"]["median"] / r["restore_ours"]["median"], 3)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    emit("snapshot", report, ok=ok, error=None if ok else "a ratio could not be computed",
         settings={"size_mb": args.size_mb, "runs": args.runs})
    return 0 if ok else 1


def print_table(report: dict) -> None:
    mb = report["datadir_bytes"] / 1e6
    print(f"snapshot/restore benchmark: datadir {mb:.0f} MB, {report['runs']} runs each (seconds: median / max)")
    for name, r in report["backends"].items():
        print(f"\n{name}://  object {r['object_bytes'] / 1e6:.0f} MB")
        print(f"  snapshot  raw pipe {r['snapshot_raw']['median']:.2f} / {r['snapshot_raw']['max']:.2f}   "
              f"ours {r['snapshot_ours']['median']:.2f} / {r['snapshot_ours']['max']:.2f}   "
              f"ratio {r['snapshot_ratio'] * 100:.0f} % (goal >= {GOAL_SNAPSHOT * 100:.0f} %)   "
              f"{r['snapshot_mb_s']} MB/s of datadir")
        print(f"  restore   raw      {r['restore_raw']['median']:.2f} / {r['restore_raw']['max']:.2f}   "
              f"ours {r['restore_ours']['median']:.2f} / {r['restore_ours']['max']:.2f}   "
              f"ratio {r['restore_ratio'] * 100:.0f} % (goal >= {GOAL_RESTORE * 100:.0f} %)   "
              f"{r['restore_mb_s']} MB/s of object")
        if "snapshot_to_file" in r:
            print(f"  storage reference (the raw pipe written to a file and fsynced): "
                  f"{r['snapshot_to_file']['median']:.2f} / {r['snapshot_to_file']['max']:.2f} "
                  f"(ours {r['snapshot_ratio_vs_file'] * 100:.0f} % of it)")
        if "snapshot_reference" in r:
            print(f"  transport reference (same tools, boto3 upload_fileobj / plain GET, no hashing): "
                  f"snapshot {r['snapshot_reference']['median']:.2f} / {r['snapshot_reference']['max']:.2f} "
                  f"(ours {r['snapshot_ratio_vs_boto3'] * 100:.0f} % of it), "
                  f"restore {r['restore_reference']['median']:.2f} / {r['restore_reference']['max']:.2f} "
                  f"(ours {r['restore_ratio_vs_boto3'] * 100:.0f} % of it)")
        print(f"  hook peak RSS: snapshot {r['rss_snapshot_small_kib'] / 1024:.0f} MiB at 1/2 size, "
              f"{r['rss_snapshot_kib'] / 1024:.0f} MiB at full size; restore {r['rss_restore_kib'] / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
