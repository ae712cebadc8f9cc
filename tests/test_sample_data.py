"""sample_data/: real films for the quick start (README's first command screens them all); the drawings of tests/assets/drawings."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_edge.bundle import DEFAULT_MODEL, list_bundled

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"
FILMS = SAMPLES / "films"
SYNTHETIC = Path(__file__).resolve().parent / "assets" / "drawings"
FULLRES = Path(os.environ.get("CXR_FULLRES", ROOT.parent / "shared" / "data" / "fullres"))
SUBTYPES = {"NORMAL": "NORMAL", "bacteria": "BACTERIAL", "virus": "VIRAL"}


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manifest() -> list[dict[str, str]]:
    with open(FILMS / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def film_files() -> list[str]:
    return sorted(p.relative_to(FILMS).as_posix() for p in FILMS.rglob("*.jpeg"))


def needs_bundled_models() -> None:
    if not {DEFAULT_MODEL, "subtype"} <= set(list_bundled()):
        pytest.skip("no bundled models in this checkout yet")


def test_every_film_is_in_the_manifest_with_its_source_and_sha256() -> None:
    rows = manifest()
    assert sorted(r["file"] for r in rows) == film_files() and 8 <= len(rows) <= 12
    for row in rows:
        data = (FILMS / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == int(row["bytes"]), row["file"]
        assert row["source"].endswith(f"train/{row['file']}") and re.fullmatch(r"[0-9a-f]{64}", row["source_sha256"])
        with Image.open(FILMS / row["file"]) as img:
            assert img.size == (int(row["width"]), int(row["height"])) and max(img.size) <= 1024


def test_the_films_are_small_both_classes_and_both_kinds_of_pneumonia_from_distinct_patients() -> None:
    files = film_files()
    assert sum((FILMS / f).stat().st_size for f in files) < 2_000_000
    kinds = [next(kind for kind in SUBTYPES if kind in f) for f in files]
    assert {kind: kinds.count(kind) for kind in SUBTYPES} == {"NORMAL": 4, "bacteria": 3, "virus": 3}
    patients = {re.match(r"\w+/(person\d+|IM-\d+)", f)[1] for f in files}
    assert len(patients) == len(files)


def test_the_readme_of_sample_data_credits_the_data_set_under_cc_by_4() -> None:
    text = (SAMPLES / "README.md").read_text(encoding="utf-8")
    for needed in ("CC BY 4.0", "10.17632/rscbjbr9sj.2", "10.1016/j.cell.2018.02.010", "Kermany",
                   "training split", "never a measure of its accuracy"):
        assert needed in text, needed


def readme_first_command() -> list[str]:
    """The first ``cxr-edge`` line of the README (its quick start), as words."""
    line = next(line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
                if line.startswith("cxr-edge "))
    return shlex.split(line.split("#")[0])


def test_the_readme_first_command_screens_every_film_and_exits_0(cli, tmp_path: Path, monkeypatch,
                                                                report_rows) -> None:
    needs_bundled_models()
    words = readme_first_command()
    assert words[:2] == ["cxr-edge", "classify"] and words[2].startswith("sample_data")
    (tmp_path / "sample_data").symlink_to(SAMPLES, target_is_directory=True)
    monkeypatch.chdir(tmp_path)  # the report lands here, the films are read as the README names them
    result = cli(*words[1:])
    assert result.exit_code == 0, result.stderr
    rows = report_rows(tmp_path / words[words.index("--out") + 1])
    assert sorted(r["path"] for r in rows) == [f"sample_data/films/{f}" for f in film_files()]
    assert all(r["status"] == "ok" and r["prediction"] == r["path"].split("/")[2] for r in rows)
    assert "10 classified (NORMAL 4, PNEUMONIA 6)" in result.stderr


def test_the_subtype_bundle_reads_bacterial_and_viral_films_as_the_file_names_say(cli, tmp_path: Path,
                                                                                   report_rows) -> None:
    """The second demonstration, ``cxr-edge evaluate sample_data/films --model subtype``, is all right."""
    needs_bundled_models()
    result = cli("evaluate", FILMS, "--model", "subtype", "--quiet")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"accuracy\s+1\.000", result.stdout) and "multiclass accuracy 1.000" in result.stdout
    out = tmp_path / "r.csv"
    assert cli("classify", FILMS, "--out", out, "--model", "subtype", "--quiet").exit_code == 0
    for row in report_rows(out):
        assert row["prediction"] == next(v for k, v in SUBTYPES.items() if k in row["path"]), row["path"]


@pytest.mark.needs_data
def test_the_script_remakes_the_films_from_the_originals(tmp_path: Path) -> None:
    if not FULLRES.is_dir():
        pytest.skip(f"{FULLRES} not found (set $CXR_FULLRES)")
    load_script(SAMPLES / "make_films.py").main(FULLRES, tmp_path)
    remade = list(csv.DictReader(open(tmp_path / "manifest.csv", newline="", encoding="utf-8")))
    kept = ("file", "label", "source", "source_sha256", "width", "height")
    assert [{k: r[k] for k in kept} for r in remade] == [{k: r[k] for k in kept} for r in manifest()]
    for row in remade:  # JPEG encoders may differ by a grey level between Pillow versions
        made, committed = (np.asarray(Image.open(d / row["file"]), dtype=np.int32) for d in (tmp_path, FILMS))
        assert np.abs(made - committed).mean() < 1.0, row["file"]


def test_the_committed_drawings_are_what_their_script_makes(tmp_path: Path) -> None:
    script = load_script(SYNTHETIC / "make_samples.py")
    script.main(tmp_path)
    names = sorted(p.name for p in SYNTHETIC.iterdir() if p.suffix in (".jpg", ".png"))
    assert names == sorted(name for name, *_ in script.SAMPLES)
    assert all(name.startswith("synthetic_") for name in names)
    for name in names:
        made, committed = (np.asarray(Image.open(d / name), dtype=np.int32) for d in (tmp_path, SYNTHETIC))
        assert made.shape == committed.shape
        assert np.abs(made - committed).mean() < 1.0, name  # JPEG encoders may differ by a grey level


def test_the_gate_rejects_every_drawing_and_screen_all_classifies_them(cli, tmp_path: Path, report_rows) -> None:
    """The drawings are not films: the gate rejects them (exit 1, as their README says)."""
    needs_bundled_models()
    out = tmp_path / "report.csv"
    result = cli("classify", SYNTHETIC, "--out", out)
    assert result.exit_code == 1, result.stderr
    rows = report_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(p.as_posix() for p in SYNTHETIC.glob("synthetic_*"))
    assert {r["status"] for r in rows} == {"rejected"} and "8 rejected" in result.stderr
    result = cli("classify", SYNTHETIC, "--out", out, "--overwrite", "--screen-all")
    assert result.exit_code == 0, result.stderr
    assert {r["status"] for r in report_rows(out)} == {"ok"} and "8 classified" in result.stderr
    assert "8 of them screened only because of --screen-all: the gate would have rejected them" in result.stderr
