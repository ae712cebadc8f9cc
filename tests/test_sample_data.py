"""sample_data/: made by its script, and the README's first command classifies all of it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_edge.bundle import DEFAULT_MODEL, list_bundled

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"


def load_script():
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_samples_are_what_the_script_makes(tmp_path: Path) -> None:
    script = load_script()
    script.main(tmp_path)
    names = sorted(p.name for p in SAMPLES.iterdir() if p.suffix in (".jpg", ".png"))
    assert names == sorted(name for name, *_ in script.SAMPLES)
    assert all(name.startswith("synthetic_") for name in names)
    for name in names:
        made, committed = (np.asarray(Image.open(d / name), dtype=np.int32) for d in (tmp_path, SAMPLES))
        assert made.shape == committed.shape
        assert np.abs(made - committed).mean() < 1.0, name  # JPEG encoders may differ by a grey level


def test_the_readme_command_rejects_every_drawing_and_screen_all_classifies_them(cli, tmp_path: Path,
                                                                                  report_rows) -> None:
    """The samples are drawings, not films: the gate rejects them (exit 1, as README says)."""
    if DEFAULT_MODEL not in list_bundled():
        pytest.skip("no bundled default model in this checkout yet")
    out = tmp_path / "report.csv"
    result = cli("classify", SAMPLES, "--out", out)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(p.as_posix() for p in SAMPLES.glob("synthetic_*"))
    assert {r["status"] for r in rows} == {"rejected"} and "8 rejected" in result.stderr
    result = cli("classify", SAMPLES, "--out", out, "--overwrite", "--screen-all")
    assert result.exit_code == 0, result.stderr
    assert {r["status"] for r in report_rows(out)} == {"ok"} and "8 classified" in result.stderr
