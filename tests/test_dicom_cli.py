"""End to end: `cxr-edge classify` reads DICOM beside JPEG and PNG, and reports its header fields."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from cxr_edge.dicom import HEADER_COLUMNS, PHI_COLUMNS

pytest.importorskip("pydicom", minversion="3")
from dicom_files import write_dicom  # noqa: E402

HEADER = {
    "PatientID": "P-0042", "StudyDate": "20240131", "Modality": "CR", "ViewPosition": "PA",
    "BodyPartExamined": "CHEST",
}
WINDOWS = {"no window": {}, "identity window": {"WindowCenter": 128, "WindowWidth": 256}}


def classify(cli: Callable, model: Path, folder: Path, *options: str) -> tuple[int, Path]:
    out = folder.parent / "report.csv"
    result = cli("classify", folder, "-o", out, "-m", model, "-q", "--overwrite", *options)
    return result.exit_code, out


def grey_png(make_image: Callable, path: Path, seed: int = 0) -> np.ndarray:
    """Write a grey PNG and return its 8-bit pixels, for a DICOM twin."""
    return np.asarray(Image.open(make_image(path, size=(120, 100), seed=seed)))


def test_a_folder_mixing_jpeg_png_and_dicom_is_classified_whole(
    tmp_path: Path, cli: Callable, binary_model: Path, make_image: Callable, report_rows: Callable
) -> None:
    folder = tmp_path / "films"
    make_image(folder / "a.jpg", seed=1)
    grey_png(make_image, folder / "b.png", seed=2)
    film = (np.random.default_rng(3).random((90, 110)) * 4095).astype(np.uint16)
    write_dicom(folder / "c.dcm", film, bits_stored=12, WindowCenter=2048, WindowWidth=4096, **HEADER)
    write_dicom(folder / "IM000001", film, photometric="MONOCHROME1", bits_stored=12)
    code, out = classify(cli, binary_model, folder)
    rows = report_rows(out)
    assert code == 0
    assert [r["path"] for r in rows] == [f"{folder.as_posix()}/{n}" for n in ("IM000001", "a.jpg", "b.png", "c.dcm")]
    assert {r["status"] for r in rows} == {"ok"}
    assert all(r["prediction"] in ("NORMAL", "PNEUMONIA") for r in rows)
    assert (rows[3]["width"], rows[3]["height"]) == ("110", "90")


@pytest.mark.parametrize("window", WINDOWS.values(), ids=WINDOWS.keys())
@pytest.mark.parametrize("model", ["binary_model", "float_model"])
def test_dicom_and_png_of_the_same_pixels_get_the_same_probability(
    tmp_path: Path, cli: Callable, make_image: Callable, report_rows: Callable,
    request: pytest.FixtureRequest, model: str, window: dict[str, int],
) -> None:
    folder = tmp_path / "films"
    pixels = grey_png(make_image, folder / "film.png")
    write_dicom(folder / "film.dcm", pixels, **window)
    code, out = classify(cli, request.getfixturevalue(model), folder)
    dcm, png = report_rows(out)
    assert code == 0
    assert dcm["probability"] == png["probability"] != ""


def test_monochrome1_dicom_of_the_inverted_pixels_is_seen_as_the_png(
    tmp_path: Path, cli: Callable, float_model: Path, make_image: Callable, report_rows: Callable
) -> None:
    folder = tmp_path / "films"
    pixels = grey_png(make_image, folder / "film.png")
    Image.fromarray(255 - pixels).save(folder / "negative.png")
    write_dicom(folder / "film.dcm", 255 - pixels, photometric="MONOCHROME1")
    code, out = classify(cli, float_model, folder)
    dcm, png, negative = report_rows(out)
    assert code == 0
    assert dcm["probability"] == png["probability"] != negative["probability"]  # the model tells them apart


def test_header_fields_reach_the_report_with_view_warnings(
    tmp_path: Path, cli: Callable, binary_model: Path, report_rows: Callable
) -> None:
    film = np.full((64, 64), 100, np.uint8)
    write_dicom(tmp_path / "in" / "lat.dcm", film, **{**HEADER, "ViewPosition": "LL"})
    code, out = classify(cli, binary_model, tmp_path / "in")
    [row] = report_rows(out)
    assert code == 0
    assert {c: row[c] for c in HEADER_COLUMNS} == {
        "patient_id": "P-0042", "study_date": "2024-01-31", "modality": "CR", "view_position": "LL",
        "body_part": "CHEST",
    }
    assert "lateral view (LL)" in row["note"]


def test_the_html_page_carries_the_view_warnings_too(tmp_path: Path, cli: Callable, binary_model: Path) -> None:
    """A reader of the page alone must also learn that the film is not one the model knows."""
    write_dicom(tmp_path / "in" / "lat.dcm", np.full((64, 64), 100, np.uint8), **{**HEADER, "ViewPosition": "LL"})
    page = tmp_path / "page.html"
    code, _ = classify(cli, binary_model, tmp_path / "in", "--html", str(page))
    assert code == 0
    assert "lateral view (LL): the model was trained on frontal chest films only" in page.read_text(encoding="utf-8")


@pytest.mark.parametrize("no_phi", [False, True])
def test_the_html_page_names_whose_film_each_row_is_unless_no_phi(
    tmp_path: Path, cli: Callable, binary_model: Path, no_phi: bool
) -> None:
    """A DICOM file named by its UID says nothing to a reader; its header says whose film it is."""
    write_dicom(tmp_path / "in" / "1.2.840.113619.2.55.dcm", np.full((64, 64), 100, np.uint8), **HEADER)
    page = tmp_path / "page.html"
    code, _ = classify(cli, binary_model, tmp_path / "in", "--html", str(page), *(["--no-phi"] if no_phi else []))
    assert code == 0
    text = page.read_text(encoding="utf-8")
    kept_whole = '<span class="nowrap">patient P-0042</span>, <span class="nowrap">study 2024-01-31</span>'
    assert (kept_whole in text) is not no_phi  # an ID or a date never breaks mid-word
    assert ("P-0042" in text) is not no_phi


def test_no_phi_leaves_patient_identifiers_out_of_the_report(
    tmp_path: Path, cli: Callable, binary_model: Path, report_rows: Callable
) -> None:
    write_dicom(tmp_path / "in" / "a.dcm", np.full((64, 64), 100, np.uint8), **HEADER)
    code, out = classify(cli, binary_model, tmp_path / "in", "--no-phi")
    [row] = report_rows(out)
    assert code == 0
    assert not set(PHI_COLUMNS) & set(row)
    assert row["modality"] == "CR" and row["view_position"] == "PA"
    text = out.read_text(encoding="utf-8")
    assert "P-0042" not in text and "2024-01-31" not in text


def test_unreadable_dicoms_are_error_rows_beside_classified_images(
    tmp_path: Path, cli: Callable, binary_model: Path, make_image: Callable, report_rows: Callable
) -> None:
    folder = tmp_path / "in"
    make_image(folder / "a.png")
    write_dicom(folder / "report.dcm", None, sop_class="1.2.840.10008.5.1.4.1.1.88.11")  # Basic Text SR
    cut = write_dicom(folder / "cut.dcm", np.zeros((64, 64), np.uint16), bits_stored=12)
    cut.write_bytes(cut.read_bytes()[:-1000])
    code, out = classify(cli, binary_model, folder)
    rows = {Path(r["path"]).name: r for r in report_rows(out)}
    assert code == 1
    assert rows["a.png"]["status"] == "ok"
    assert rows["report.dcm"]["status"] == rows["cut.dcm"]["status"] == "error"
    assert "Basic Text SR" in rows["report.dcm"]["error"]
    assert "pixel data" in rows["cut.dcm"]["error"]


def test_without_pydicom_dicom_rows_say_how_to_install_it(
    tmp_path: Path, cli: Callable, binary_model: Path, make_image: Callable, report_rows: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "in"
    make_image(folder / "a.png")
    write_dicom(folder / "b.dcm", np.full((64, 64), 100, np.uint8))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    code, out = classify(cli, binary_model, folder)
    png, dcm = report_rows(out)
    assert code == 1
    assert png["status"] == "ok"
    assert dcm["status"] == "error" and "pip install 'pydicom>=3'" in dcm["error"]


def test_evaluate_and_explain_read_dicom(
    tmp_path: Path, cli: Callable, float_model: Path, report_rows: Callable
) -> None:
    film = (np.random.default_rng(4).random((80, 80)) * 4095).astype(np.uint16)
    write_dicom(tmp_path / "lab" / "NORMAL" / "a.dcm", film, bits_stored=12)
    write_dicom(tmp_path / "lab" / "PNEUMONIA" / "IM0001", film, photometric="MONOCHROME1", bits_stored=12)
    evaluated = cli("evaluate", tmp_path / "lab", "-m", float_model, "--out-dir", tmp_path / "ev", "--no-plots", "-q")
    assert evaluated.exit_code == 0
    rows = report_rows(tmp_path / "ev" / "predictions.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert "patient_id" not in rows[0] and "study_date" not in rows[0]  # evaluation keeps no PHI
    assert "P-0042" not in (tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8")
    explained = cli("explain", tmp_path / "lab" / "NORMAL" / "a.dcm", "-m", float_model, "--out-dir", tmp_path / "ex", "-q")
    assert explained.exit_code == 0
    assert len(list((tmp_path / "ex").glob("*.png"))) == 1


def test_evaluate_resamples_a_patient_s_dicom_films_together(tmp_path: Path, cli: Callable, float_model: Path) -> None:
    film = np.full((64, 64), 100, np.uint8)
    for n, (label, patient) in enumerate([("NORMAL", "P-1"), ("NORMAL", "P-1"), ("PNEUMONIA", "P-2"), ("PNEUMONIA", "")]):
        write_dicom(tmp_path / "lab" / label / f"{n}.dcm", film, PatientID=patient)
    evaluated = cli("evaluate", tmp_path / "lab", "-m", float_model, "--out-dir", tmp_path / "ev", "--no-plots", "-q")
    assert evaluated.exit_code == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["bootstrap"]["resampled"] == "2 patients and 1 image of unknown patient"
    assert "P-1" not in json.dumps(metrics)  # the PatientID groups the films; it is not written
