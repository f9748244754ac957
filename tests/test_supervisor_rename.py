"""set_service_name / notify: the hooks' way to move a node between service names."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from triton_mysql.supervisor import config as cb
from triton_mysql.supervisor.rename import notify, set_service_name

ENV = {"NODE_NAME": "n1", "ADVERTISE_ADDRESS": "10.0.0.1", "SERVICE_NAME": "mysql", "CONSUL": "c:8500"}
NAMES = {"mysql", "mysql-primary"}

TEMPLATED = """{
  "consul": "{{ .CONSUL }}",
  "etcd": {"endpoints": "{{ .ETCD }}", "prefix": "{{ .ETCD_PREFIX | default "/triton-mysql" }}"},
  "services": [
    {
      "name": "{{ .SERVICE_NAME | default "mysql" }}",
      "port": 3306,
      "health": "triton-mysql health",
      "poll": 2,
      "ttl": 10
    }
  ],
  "backends": [{"name": "{{ .SERVICE_NAME | default "mysql" }}-primary", "poll": 2, "onChange": "x"}]
}
"""


def write(tmp_path, text: str):
    path = tmp_path / "containerbuddy.json"
    path.write_text(text)
    path.chmod(0o640)
    return path


def test_rename_keeps_templates_and_everything_else(tmp_path):
    path = write(tmp_path, TEMPLATED)
    inode = path.stat().st_ino
    assert set_service_name(f"file://{path}", NAMES, "mysql-primary", env=ENV)
    text = path.read_text()
    assert text == TEMPLATED.replace('"name": "{{ .SERVICE_NAME | default "mysql" }}",', '"name": "mysql-primary",')
    assert path.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["containerbuddy.json"]  # no temporary file left
    # the supervisor reads the new name; the backend (a template) is untouched
    config = cb.load(str(path), ENV)
    assert config.services[0].name == "mysql-primary" and config.backends[0].name == "mysql-primary"
    # and back: now the name is literal
    assert set_service_name(str(path), NAMES, "mysql", env=ENV)
    assert cb.load(str(path), ENV).services[0].name == "mysql"


def test_already_named_is_false_and_leaves_the_file_alone(tmp_path):
    path = write(tmp_path, TEMPLATED)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert set_service_name(str(path), NAMES, "mysql", env=ENV) is False  # the template renders "mysql"
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before
    assert path.read_text() == TEMPLATED


def test_templates_outside_strings_are_rendered_then_rewritten(tmp_path):
    text = TEMPLATED.replace('"port": 3306', '"port": {{ .MYSQL_PORT | default "3306" }}')
    path = write(tmp_path, text)
    assert set_service_name(str(path), NAMES, "mysql-primary", env={**ENV, "MYSQL_PORT": "3307"})
    data = json.loads(path.read_text())
    assert data["services"][0] == {"name": "mysql-primary", "port": 3307, "health": "triton-mysql health",
                                   "poll": 2, "ttl": 10}
    assert data["consul"] == "c:8500"


def test_only_the_matching_service_changes(tmp_path):
    config = {"consul": "c:1", "services": [
        {"name": "other", "port": 1, "health": "true", "poll": 1, "ttl": 2},
        {"name": "mysql-primary", "port": 2, "health": "true", "poll": 1, "ttl": 2},
    ]}
    path = write(tmp_path, json.dumps(config, indent=4))
    assert set_service_name(str(path), NAMES, "mysql", env=ENV)
    config["services"][1]["name"] = "mysql"
    assert path.read_text() == json.dumps(config, indent=4)


def test_no_matching_service_and_literal_json_are_false(tmp_path):
    path = write(tmp_path, json.dumps({"services": [{"name": "web"}]}))
    assert set_service_name(str(path), NAMES, "mysql-primary", env=ENV) is False
    assert set_service_name('{"services": [{"name": "mysql"}]}', NAMES, "mysql-primary", env=ENV) is False


def test_errors(tmp_path):
    with pytest.raises(OSError):
        set_service_name(str(tmp_path / "missing.json"), NAMES, "mysql", env=ENV)
    path = write(tmp_path, '{"services": [')
    with pytest.raises(ValueError):
        set_service_name(str(path), NAMES, "mysql", env=ENV)


def test_notify_sends_sighup(tmp_path):
    ready = tmp_path / "ready"
    code = f"import signal, time, pathlib; signal.signal(signal.SIGHUP, lambda *a: exit(42)); " \
           f"pathlib.Path({str(ready)!r}).touch(); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        notify(proc.pid)
        assert proc.wait(10) == 42
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
