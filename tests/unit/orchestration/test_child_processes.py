"""A night's child processes (training, monitor, sizer) die with the process that started them:
a killed night leaves nothing running on behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DRIVER = """
import os, sys
from types import SimpleNamespace
from pathlib import Path
from huracan.orchestration.steps import _run
tmp = Path(sys.argv[1])
s = SimpleNamespace(cwd=str(tmp), env=lambda: dict(os.environ))
child = ("import os, time, pathlib; pathlib.Path('child.pid').write_text(str(os.getpid())); "
         "time.sleep(120)")
_run([sys.executable, "-c", child], s, tmp / "child.log")
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie until its (new) parent reaps it counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_child_dies_when_the_night_is_killed(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)])
    pid_file = tmp_path / "child.pid"
    try:
        end = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < end:
            time.sleep(0.1)
        assert pid_file.exists(), "the child never started"
        time.sleep(0.2)
        child = int(pid_file.read_text())
        assert _alive(child)
        driver.send_signal(signal.SIGKILL)  # the night only, not its process group
        driver.wait(timeout=10)
        end = time.monotonic() + 10
        while _alive(child) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _alive(child), "the child outlived the killed night"
    finally:
        if driver.poll() is None:
            driver.kill()
        if pid_file.exists() and _alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
