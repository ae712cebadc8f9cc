"""`cxr-edge --help` starts light: the library is imported by the commands, not by the CLI module.

Not a timing test (benchmarks/ measures the time); it checks what makes start-up slow.
"""

from __future__ import annotations

import subprocess
import sys

from cxr_edge import classify, cli

HEAVY = ("numpy", "PIL", "tqdm", "ai_edge_litert", "tflite_runtime", "tensorflow", "cxr_edge.engine")


def test_help_imports_no_numpy_pillow_tqdm_or_interpreter() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['cxr-edge', '--help']\n"
        "try:\n"
        "    runpy.run_module('cxr_edge', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "classify" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_devices_offered_by_the_cli_are_the_library_s() -> None:
    assert cli.DEVICES == classify.DEVICES
