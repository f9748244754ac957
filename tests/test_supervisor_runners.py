"""The runners' schedule rule and a reload's matching by name, in-process (no child is spawned)."""
from __future__ import annotations

from triton_mysql.supervisor import reload
from triton_mysql.supervisor.backends import BackendConfig
from triton_mysql.supervisor.config import SupervisorConfig
from triton_mysql.supervisor.context import Context, next_run
from triton_mysql.supervisor.process import ProcessTable
from triton_mysql.supervisor.schema import Command
from triton_mysql.supervisor.tasks import TaskConfig, TaskRunner
from triton_mysql.supervisor.worker import ErrorLog


def test_next_run_is_one_period_later_and_never_a_burst():
    assert next_run(10.0, 2.0, 10.5) == 12.0
    assert next_run(10.0, 2.0, 15.0) == 17.0  # the loop fell behind: one period from now


class Sup:
    def __init__(self) -> None:
        self.ctx = Context(ProcessTable({}), ErrorLog())
        self.config = SupervisorConfig(source="", path=None, node="n")
        self.services, self.backends, self.tasks, self.coprocesses = [], [], [], []

    def set_worker(self, worker) -> None:
        self.ctx.worker = worker


def _config(**sections) -> SupervisorConfig:
    return SupervisorConfig(source="", path=None, node="n", **sections)


def test_a_reload_keeps_runners_by_name():
    sup = Sup()
    task = TaskConfig("t", Command(("true",)), frequency=5.0, timeout=5.0)
    backend = BackendConfig("b", 1.0, Command(("true",)))
    assert reload.apply(sup, _config(tasks=(task,), backends=(backend,))) == ["backend b added", "task t added"]
    kept: TaskRunner = sup.tasks[0]
    due = kept.next_due
    slower = TaskConfig("t", Command(("true",)), frequency=50.0, timeout=5.0)
    assert reload.apply(sup, _config(tasks=(slower,))) == ["backend b removed", "task t changed"]
    assert sup.tasks == [kept] and kept.config is slower and kept.next_due > due
    assert reload.apply(sup, _config()) == ["task t removed"] and kept.removed and not kept.active()
