"""Shared fixtures: the tiny committed model bundles, image files, the CLI and its report."""

from __future__ import annotations

import csv
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image

from cxr_edge.cli import main

ASSETS = Path(__file__).parent / "assets"


def asset_bundle(name: str) -> Path:
    """A committed tiny bundle's manifest (real TFLite models, made by tests/assets/make_assets.py)."""
    return ASSETS / f"{name}.json"


@pytest.fixture
def binary_model() -> Path:
    """A tiny int8 NORMAL/PNEUMONIA bundle."""
    return asset_bundle("tiny_binary_int8")


@pytest.fixture
def float_model() -> Path:
    """A tiny float32 NORMAL/PNEUMONIA bundle."""
    return asset_bundle("tiny_binary_float32")


@pytest.fixture
def subtype_model() -> Path:
    """A tiny int8 multiclass bundle (NORMAL / BACTERIAL / VIRAL)."""
    return asset_bundle("tiny_subtype_int8")


@pytest.fixture
def copy_bundle(tmp_path: Path) -> Callable[[Path, Path], Path]:
    """Copy a bundle (manifest and model files) into a folder; returns the new manifest path."""

    def copy(manifest: Path, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for sibling in manifest.parent.glob(f"{Path(manifest).stem}*"):
            shutil.copy2(sibling, folder / sibling.name)
        return folder / manifest.name

    return copy


def gradient_pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth grey picture with a little noise: compresses well and differs by seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = 80 + 100 * np.sin(x / max(width, 1) * 3 + seed) * np.cos(y / max(height, 1) * 2)
    return np.clip(base + rng.normal(0, 8, (height, width)), 0, 255).astype(np.uint8)


@pytest.fixture
def make_image() -> Callable[..., Path]:
    """Write a picture to ``path`` (format from the suffix); ``mode`` converts the grey picture."""

    def make(path: Path, size: tuple[int, int] = (96, 80), seed: int = 0, mode: str = "L", **save: object) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(gradient_pixels(*size, seed=seed))
        if mode != "L":
            img = img.convert(mode)
        img.save(path, **save)
        return path

    return make


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run ``cxr-edge ARGS`` in-process; stdout and stderr are kept apart."""
    runner = CliRunner()

    def invoke(*args: object) -> Result:
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def unlistable(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Make ``os.scandir`` of a folder fail as an unreadable folder does (chmod 000 does not stop root)."""
    scandir = os.scandir

    def refuse(folder: Path) -> None:
        def guarded(path: object = ".") -> object:
            if Path(path).resolve() == folder.resolve():
                raise PermissionError(13, "Permission denied", str(path))
            return scandir(path)

        monkeypatch.setattr(os, "scandir", guarded)

    return refuse


def hotspot(heat) -> tuple[float, float]:
    """(x, y) centre of a heatmap's area with at least half its largest drop: where it points.

    A centroid rather than the hottest pixel: the map is flat within each stride cell, so
    the hottest pixel sits at a cell corner.
    """
    hot = np.where(heat.drop >= 0.5 * heat.drop.max(), heat.drop, 0.0)
    ys, xs = np.mgrid[0 : hot.shape[0], 0 : hot.shape[1]]
    return float((xs * hot).sum() / hot.sum()), float((ys * hot).sum() / hot.sum())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with no real pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """Write one of each bad input the issue names; returns {file name: expected error (regex)}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero_byte.png").write_bytes(b"")
    (folder / "text_named.jpg").write_text("hello, I am a text file\n", encoding="utf-8")
    Image.fromarray(gradient_pixels(300, 300)).save(folder / "whole.jpg")
    data = (folder / "whole.jpg").read_bytes()
    (folder / "whole.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(50_000, 50_000))
    (folder / "folder.jpg").mkdir()
    return {
        "zero_byte.png": "empty file",
        "text_named.jpg": "not a readable image",
        "truncated.jpg": "truncated",
        "bomb.png": "decompression bomb|over the .* limit",
        "folder.jpg": "is a folder",
    }


@pytest.fixture
def bad_inputs() -> Callable[[Path], dict[str, str]]:
    """Writes the issue's bad inputs into a folder (see :func:`write_bad_inputs`)."""
    return write_bad_inputs


def read_report(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def report_rows() -> Callable[[Path], list[dict[str, str]]]:
    """Read a CSV report with Python's csv module: one dict per row."""
    return read_report


# --- Training runs, each made once per session (a smoke fit takes seconds to a minute) and shared by
# the train tests of every module. A test that changes a run must copy it first, or leave it as it was.


@pytest.fixture(scope="session")
def kermany(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated Kermany-style folder of 24 patients (tests/train_data.py)."""
    from train_data import make_kermany

    return make_kermany(tmp_path_factory.mktemp("kermany"), n_patients=24)


def train_cli(*args: str) -> Result:
    """Run ``python -m train ARGS`` in-process; an exception fails the test with its traceback."""
    from train.cli import main as train_main  # lazy: conftest serves edge-only installs too

    return CliRunner().invoke(train_main, list(args), catch_exceptions=False)


def smoke_run(kermany: Path, out: Path, *options: str) -> Path:
    """A finished ``fit --smoke`` run in ``out``."""
    result = train_cli("fit", "--data", str(kermany), "--out", str(out), "--smoke",
                       "--cache-dir", str(out.parent / "cache"), *options)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def binary_run(kermany: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary smoke run at 64 px (contract 2)."""
    return smoke_run(kermany, tmp_path_factory.mktemp("runs") / "binary", "--size", "64")


@pytest.fixture(scope="session")
def run_224(kermany: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run reading films as the committed tiny bundles do (224 px, no re-encoding), to score them on."""
    return smoke_run(kermany, tmp_path_factory.mktemp("runs") / "run224", "--size", "224", "--reencode-jpeg", "0")


@pytest.fixture(scope="session")
def subtype_run(kermany: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-class (NORMAL / BACTERIAL / VIRAL) smoke run of the tuned architecture at 48 px."""
    return smoke_run(kermany, tmp_path_factory.mktemp("runs") / "subtype", "--size", "48", "--task", "subtype",
                     "--arch", "tuned")
