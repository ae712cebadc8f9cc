"""The files every stage is measured on, and the machine they are measured on.

N files are made by symlinking the source images in turn into a temporary folder, so
every stage (ours, the seed way, the limit) reads exactly the same files, and a folder
of 10,000 costs no disk space. The source is a path given on the command line, never a
path written here.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VERSIONS_OF = ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "keras", "numpy", "pillow")


class NoImages(Exception):
    """The source folder holds no images."""


def source_images(root: Path) -> list[Path]:
    """Image files under ``root``, sorted (hidden files and folders below ``root`` skipped; ``root`` itself may be
    reached through ``..``)."""
    found = sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        and not any(s.startswith(".") for s in p.relative_to(root).parts)
    )
    if not found:
        raise NoImages(f"no .jpg/.jpeg/.png images under {root}")
    return found


def link_folder(sources: list[Path], count: int, folder: Path) -> list[Path]:
    """Fill ``folder`` with ``count`` symlinks cycling through ``sources``; returns them in sorted order."""
    folder.mkdir(parents=True, exist_ok=True)
    links = []
    for i in range(count):
        source = sources[i % len(sources)]
        link = folder / f"{i:06d}_{source.parent.name}_{source.name}"
        link.symlink_to(source.resolve())
        links.append(link)
    return links


def write_list(paths: list[Path], where: Path) -> Path:
    """A file list for the worker processes (one path a line)."""
    where.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    return where


def read_list(where: str | Path) -> list[str]:
    return [line for line in Path(where).read_text(encoding="utf-8").splitlines() if line]


def cpu_model() -> str:
    """x86 says ``model name``; a Raspberry Pi says ``Model`` (the board) and ``Hardware``."""
    try:
        fields = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())
        )
    except OSError:
        fields = {}
    for key in ("model name", "model", "hardware"):
        if fields.get(key) and not fields[key].isdigit():
            return fields[key]
    return platform.processor() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def memory_total_mib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in VERSIONS_OF:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def machine() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "arch": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "memory_mib": memory_total_mib(),
        "versions": versions(),
    }


def load() -> float:
    """The 1-minute load average (other work on the machine skews every timing)."""
    return os.getloadavg()[0]
