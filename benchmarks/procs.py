"""Run a command as a child process and measure it the way a user experiences it.

Peak memory is the child's own ``ru_maxrss`` from ``wait4`` (the whole process: the
interpreter, numpy, Pillow, every thread), not a guess from inside. Output lines are
time-stamped as they arrive, so throughput can be taken between the first and the last
result, leaving start-up out (start-up is measured on its own as cold start).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import tempfile
import time
from typing import Sequence


class ChildFailed(Exception):
    """A measured command exited with an unexpected status; the message has its stderr tail."""


@dataclasses.dataclass
class Run:
    """One finished child process."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_mib: float
    line_times: list[float]  # seconds since start at which each stdout line arrived
    stdout: list[str]
    stderr: str

    def check(self, allowed: Sequence[int] = (0,)) -> "Run":
        if self.returncode not in allowed:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise ChildFailed(f"{' '.join(self.argv)} exited with {self.returncode}:\n{tail}")
        return self


def run(argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None) -> Run:
    """Run ``argv`` to completion; stderr goes to a temporary file so a chatty child cannot block."""
    argv = [str(a) for a in argv]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, cwd=cwd)
        times, lines = [], []
        assert proc.stdout is not None
        for raw in proc.stdout:
            times.append(time.perf_counter() - start)
            lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    # Linux reports ru_maxrss in KiB.
    return Run(argv, proc.returncode, wall, usage.ru_maxrss / 1024, times, lines, stderr)


def steady_rate(line_times: Sequence[float], skip: int = 1) -> float | None:
    """Results per second between the first result and the last one (start-up left out).

    Results come in bursts (the engine invokes a batch at once), so the lines that arrived
    with the first one are not counted: only those strictly after it, over the time after it.
    None when every result came in one burst (too few files to tell).
    """
    times = list(line_times)[skip:]
    first = times[0] if times else 0.0
    later = [t for t in times if t > first + 1e-3]
    return len(later) / (times[-1] - first) if later else None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    data = sorted(values)
    if not data:
        return float("nan")
    if len(data) == 1:
        return data[0]
    return statistics.quantiles(data, n=100, method="inclusive")[min(98, max(0, round(q) - 1))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
