"""Compile the int8 model for the Coral Edge TPU when ``edgetpu_compiler`` is installed.

The compiler runs only on x86-64 Linux; elsewhere the compiler-ready int8 model is still
written, and the op check in :mod:`convert.ops` says whether it would map.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

COMPILER = "edgetpu_compiler"
EDGETPU_SUFFIX = "_edgetpu.tflite"
_ON_TPU = re.compile(r"Number of operations that will run on Edge TPU:\s*(\d+)")
_ON_CPU = re.compile(r"Number of operations that will run on CPU:\s*(\d+)")


def compiler_path() -> str | None:
    return shutil.which(COMPILER)


def compile_model(model_path: Path, timeout_s: int = 300) -> dict[str, Any]:
    """Run the compiler next to ``model_path``; the result says what mapped (or why nothing ran)."""
    compiler = compiler_path()
    if compiler is None:
        return {"compiled": False, "reason": f"{COMPILER} not on PATH (x86-64 Linux only; see docs/conversion.md)"}
    try:
        done = subprocess.run([compiler, "--out_dir", str(model_path.parent), "--show_operations", str(model_path)],
                              capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"compiled": False, "reason": f"{COMPILER} failed to run: {exc}"}
    output = model_path.with_name(model_path.stem + EDGETPU_SUFFIX)
    if done.returncode != 0 or not output.exists():
        return {"compiled": False, "reason": f"{COMPILER} exit {done.returncode}: {done.stdout[-500:]}{done.stderr[-500:]}"}
    version = re.search(r"Edge TPU Compiler version (\S+)", done.stdout)
    return {
        "compiled": True,
        "file": output.name,
        "compiler_version": version.group(1) if version else None,
        "ops_on_edgetpu": _count(_ON_TPU, done.stdout),
        "ops_on_cpu": _count(_ON_CPU, done.stdout),
        "log": done.stdout[-4000:],
    }


def _count(pattern: re.Pattern, text: str) -> int | None:
    match = pattern.search(text)
    return int(match.group(1)) if match else None
