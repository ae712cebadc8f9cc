"""Run a command as a child process and measure it the way a user experiences it.

Peak memory is the child's own ``ru_maxrss`` from ``wait4`` (the whole process: the
interpreter, numpy, Pillow, every thread), not a guess from inside. Output lines are
time-stamped as they arrive, with the CPU time the child has used so far (all its
threads), so throughput and CPU per image can be taken between the first and the last
result, leaving start-up out (start-up is measured on its own as cold start). CPU time
per image hardly depends on what else runs on the machine; wall time does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
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
    cpu_s: float  # user + system CPU seconds of the whole child (all threads), from wait4
    line_times: list[float]  # seconds since start at which each stdout line arrived
    line_cpu: list[float]  # CPU seconds the child had used when each line arrived (nan if unknown)
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
        times, cpu, lines = [], [], []
        assert proc.stdout is not None
        for raw in proc.stdout:
            times.append(time.perf_counter() - start)
            cpu.append(cpu_seconds(proc.pid))
            lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        proc.stdout.close()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    # Linux reports ru_maxrss in KiB.
    return Run(argv, proc.returncode, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, times, cpu,
               lines, stderr)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, all threads (Linux ``/proc``; nan elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclasses.dataclass
class Steady:
    """Results and CPU between the first result and the last (start-up left out)."""

    rows: int  # results strictly after the first one(s)
    seconds: float  # from the first result to the last
    cpu_s: float | None  # CPU the child used meanwhile (None where /proc is missing)

    @property
    def images_per_s(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds > 0 else None

    @property
    def cpu_ms_per_image(self) -> float | None:
        return 1000 * self.cpu_s / self.rows if self.rows and self.cpu_s is not None else None


def steady(run: Run, skip: int = 1) -> Steady:
    """The results after the first one (``skip`` header lines), with their time and CPU.

    Lines that arrived together with the first result are not counted (results can come in
    bursts): only those strictly after it, over the time after it.
    """
    times, cpu = run.line_times[skip:], run.line_cpu[skip:]
    if not times:
        return Steady(0, 0.0, None)
    later = [t for t in times if t > times[0] + 1e-3]
    used = cpu[-1] - cpu[0]
    return Steady(len(later), times[-1] - times[0], None if math.isnan(used) else used)


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
