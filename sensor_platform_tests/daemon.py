"""A real Dagster daemon for tests: its sensors, schedules, run queue and run launcher, every run in a
process of its own, started on a temporary instance and a workspace of the platform's code
location, with the settings a test gives it in the environment."""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import yaml

T = TypeVar("T")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PID = re.compile(r"\(pid: (\d+)\)")


@dataclass
class Daemon:
    process: subprocess.Popen
    home: Path
    log: Path
    instance: dg.DagsterInstance

    def wait_for(self, what: str, found: Callable[[], T | None], timeout_s: float) -> T:
        """Poll `found` until it returns something truthy; fail with the daemon's log if not."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"dagster-daemon exited while waiting for {what}:\n{self.tail()}")
            result = found()
            if result:
                return result
            time.sleep(0.5)
        pytest.fail(f"no {what} within {timeout_s:g} s:\n{self.tail()}")

    def runs(self, job_name: str, statuses: list[dg.DagsterRunStatus] | None = None) -> list:
        return self.instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=statuses or []))

    def worker_pid(self, run_id: str) -> int | None:
        """The pid of the process executing the run (from its "Started process" event)."""
        for entry in self.instance.all_logs(run_id):
            if entry.is_dagster_event and "Started process for run" in (entry.message or ""):
                match = _PID.search(entry.message)
                if match:
                    return int(match.group(1))
        return None

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


@contextmanager
def running_daemon(
    folder: Path,
    settings: dict[str, str],
    instance_yaml: str,
    *,
    modules: tuple[str, ...] = ("sensor_platform.definitions",),
) -> Iterator[Daemon]:
    """`dagster-daemon run` on DAGSTER_HOME=folder/home with `instance_yaml`, loading `modules`
    as code locations with `settings` in its environment (and so in its code servers' and run
    workers'). The instance is initialized first as a deploy does it (`sensor-platform
    init-instance`: its pools). Stopped, with everything it started, at the end."""
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml)
    workspace = folder / "workspace.yaml"
    workspace.write_text(
        yaml.safe_dump(
            {
                "load_from": [
                    {"python_module": {"module_name": m, "location_name": m.split(".")[0]}}
                    for m in modules
                ]
            }
        )
    )
    # The instance's SQLite storages are created here, before the daemon starts: two processes
    # creating them at once can both stamp alembic's version table ("more than one head"), and
    # then the code location fails to load.
    instance = dg.DagsterInstance.from_config(str(home))
    log = folder / "daemon.log"
    env = {**os.environ, **settings, "DAGSTER_HOME": str(home)}
    subprocess.run(
        [str(Path(sys.executable).with_name("sensor-platform")), "init-instance"],
        env=env,
        check=True,
        capture_output=True,
    )
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(workspace)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,  # its own process group: stopped with every child
    )
    try:
        yield Daemon(process, home, log, instance)
    finally:
        instance.dispose()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class GroupCpu:
    """CPU seconds of every process of one process group, sampled from /proc."""

    def __init__(self, pgid: int):
        self.pgid, self.seen = pgid, {}  # (pid, start time) -> utime + stime, in ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "GroupCpu":
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.sample()
        return sum(self.seen.values()) / CLOCK_TICKS

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def sample(self) -> None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            # fields[0] is the state (stat field 3): pgrp is field 5, utime 14, stime 15, start 22
            if int(fields[2]) == self.pgid:
                self.seen[pid, fields[19]] = int(fields[11]) + int(fields[12])
