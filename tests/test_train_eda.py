"""python -m train eda: the counts, sizes, samples and augmentation a run would see, on generated folders."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cxr_edge.testing.synthetic import synthetic_xray
from train import data, eda, run
from train.cli import main
from train.config import make_config
from train_data import make_kermany

REPO = Path(__file__).resolve().parents[1]
#: make_kermany(n_patients=24): every third patient has two films; odd patients are bacterial, even ones viral.
TRAIN_SUBTYPES = {"NORMAL": 32, "BACTERIAL": 16, "VIRAL": 16}
VAL_FILMS = {"NORMAL": ["IM-0901-0001.jpeg"], "PNEUMONIA": ["person901_bacteria_1.jpeg", "person902_virus_2.jpeg"]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """24 patients' films under train/, and three films of new patients under val/ (160x100 px)."""
    root = make_kermany(tmp_path_factory.mktemp("eda") / "data", n_patients=24)
    for label, names in VAL_FILMS.items():
        (root / "val" / label).mkdir(parents=True)
        for k, name in enumerate(names):
            synthetic_xray(100 + k, (160, 100), lesion=label == "PNEUMONIA").save(root / "val" / label / name)
    return root


def analyse(root: Path, **options) -> dict:
    return eda.analyse(make_config("mobile", "unused", data=str(root), **options))[0]


def test_counts_per_official_split_class_and_subtype_are_those_of_the_folder(folder):
    balance = analyse(folder)["balance"]
    train, val = balance["official_split"]["train"], balance["official_split"]["val"]
    assert train["subtype"] == TRAIN_SUBTYPES and train["label"] == {"NORMAL": 32, "PNEUMONIA": 32}
    assert train["patients"] == 48  # 24 NORMAL and 24 PNEUMONIA patient keys
    assert val["subtype"] == {"NORMAL": 1, "BACTERIAL": 1, "VIRAL": 1} and val["patients"] == 3
    assert balance["all"]["images"] == 67


def test_the_patient_split_is_the_one_fit_makes_with_the_same_options(folder, tmp_path):
    options = {"val_fraction": 0.3, "seed": 7, "split_seed": 11}
    shown = analyse(folder, **options)["balance"]["patient_split"]
    split = run.plan_split(make_config("mobile", str(tmp_path), data=str(folder), **options))
    assert shown["val"] == data.counts([split.records[i] for i in split.val_idx])
    assert shown["train"] == data.counts([split.records[i] for i in split.train_idx])
    assert (shown["val_fraction"], shown["seed"]) == (0.3, 11)


def test_sizes_are_read_from_file_headers_when_the_folder_has_no_manifest(folder):
    sizes = analyse(folder)["sizes"]
    assert sizes["source"] == {"file headers": 67} and sizes["unreadable"] == []
    normal, pneumonia = sizes["by_label"]["NORMAL"], sizes["by_label"]["PNEUMONIA"]
    assert normal["images"] == 33 and normal["width"] == [120, 120, 160] and normal["aspect"] == [1.25, 1.25, 1.6]
    assert pneumonia["images"] == 34 and pneumonia["height"] == [96, 96, 100]
    assert sum(sizes["histograms"]["aspect"]["PNEUMONIA"]) == 34


def test_sizes_come_from_the_manifest_when_the_folder_has_one(tmp_path):
    root = make_kermany(tmp_path / "data", n_patients=3)
    films = sorted((root / "train").glob("*/*.jpeg"))
    with (root / eda.MANIFEST).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["split", "label", "filename", "width", "height", "mode"])
        writer.writerows(["train", f.parent.name, f.name, 2000, 1000, "L"] for f in films[:-1])  # the last one: headers
    sizes = analyse(root)["sizes"]
    assert sizes["source"] == {eda.MANIFEST: len(films) - 1, "file headers": 1}
    widths = [w for s in sizes["by_label"].values() for w in s["width"]]
    assert max(widths) == 2000 and min(widths) == 120


def test_a_film_that_cannot_be_read_is_listed_and_left_out_of_sizes_and_samples(tmp_path):
    root = make_kermany(tmp_path / "data", n_patients=2)
    (root / "train" / "NORMAL" / "IM-0099-0001.jpeg").write_bytes(b"not a jpeg")
    summary, sizes, samples = eda.analyse(make_config("mobile", "unused", data=str(root)))
    assert [line.split(":")[0] for line in summary["sizes"]["unreadable"]] == ["train/NORMAL/IM-0099-0001.jpeg"]
    assert summary["sizes"]["by_label"]["NORMAL"]["images"] == len(sizes) - 2 == 2
    assert all(rec.path.name != "IM-0099-0001.jpeg" for row in samples.values() for rec in row)


def test_a_flat_folder_like_fullres_is_one_set_and_split_by_patient(tmp_path):
    root = tmp_path / "fullres"
    for name in ("IM-0001-0001.jpeg", "IM-0002-0001.jpeg"):
        (root / "NORMAL").mkdir(parents=True, exist_ok=True)
        synthetic_xray(1, (90, 90)).save(root / "NORMAL" / name)
    (root / "PNEUMONIA").mkdir()
    synthetic_xray(2, (90, 90), lesion=True).save(root / "PNEUMONIA" / "person3_virus_7.jpeg")
    balance = analyse(root, val_fraction=0.4)["balance"]
    assert list(balance["official_split"]) == [eda.FLAT]
    assert balance["official_split"][eda.FLAT]["subtype"] == {"NORMAL": 2, "VIRAL": 1}
    sides = balance["patient_split"]
    assert sides["train"]["images"] + sides["val"]["images"] == 3 and sides["val"]["images"] >= 1


def test_samples_are_a_few_films_of_each_subtype(folder):
    _, _, samples = eda.analyse(make_config("mobile", "unused", data=str(folder)))
    assert list(samples) == ["NORMAL", "BACTERIAL", "VIRAL"]
    assert [len(row) for row in samples.values()] == [eda.SAMPLES_PER_ROW] * 3
    assert all(rec.subtype == subtype for subtype, row in samples.items() for rec in row)


def test_the_augmented_views_come_from_fits_pipeline_and_keep_shape_and_grey_range(folder):
    pytest.importorskip("tensorflow")
    films = np.stack([eda.contract_pixels(p, make_config("mobile", "o", data="d", size=64).contract)
                      for p in sorted((folder / "train" / "NORMAL").iterdir())[:2]])
    views = eda.augmented_views(films, make_config("mobile", "o", data=str(folder), size=64), 3)
    assert views.shape == (3, 2, 64, 64) and views.min() >= 0 and views.max() <= 255
    assert not np.allclose(views[0], films) and not np.allclose(views[0], views[1])


def test_the_command_writes_the_numbers_the_index_and_every_figure(folder, tmp_path):
    out = tmp_path / "eda"
    result = CliRunner().invoke(main, ["eda", str(folder), "--out", str(out), "--size", "64"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / eda.JSON_FILE).read_text())
    assert summary["figures"] == ["balance.png", "sizes.png", "samples.png", "augmentation.png"]
    assert all((out / name).stat().st_size > 5000 for name in summary["figures"])
    assert summary["contract"]["width"] == 64 and summary["augmentation"]["jpeg_prob"] == 0.5
    index = (out / eda.MD_FILE).read_text()
    assert all(f"]({name})" in index for name in summary["figures"])
    assert "| official train | 64 | 48 | 32 | 32 | 16 | 16 | 50.0% |" in index


def test_a_configuration_without_augmentation_shows_none(folder, tmp_path):
    summary = eda.write_eda(make_config("baseline", "unused", data=str(folder), size=64), tmp_path, log=lambda m: None)
    assert summary["augmentation"] is None and "augmentation.png" not in summary["figures"]
    assert not (tmp_path / "augmentation.png").exists()
    assert "none (this configuration trains on clean films)" in (tmp_path / eda.MD_FILE).read_text()


def test_a_folder_without_films_fails_with_one_line(tmp_path):
    result = CliRunner().invoke(main, ["eda", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3 and result.output.startswith("python -m train: error: no images under")


def _shared_data() -> Path | None:
    path = Path(os.environ.get("CXR_DATA", REPO.parent / "shared" / "data" / "chest_xray_224"))
    return path if (path / eda.MANIFEST).is_file() and (path / "train").is_dir() else None


@pytest.mark.needs_data
@pytest.mark.skipif(_shared_data() is None, reason="Kermany data with manifest.csv not found ($CXR_DATA or ../shared/data)")
def test_the_real_224_copies_show_the_published_counts_and_one_size():
    summary = analyse(_shared_data())
    official = summary["balance"]["official_split"]
    assert official["train"]["label"] == {"NORMAL": 1341, "PNEUMONIA": 3875}
    assert official["val"]["label"] == {"NORMAL": 8, "PNEUMONIA": 8}
    assert summary["sizes"]["source"] == {eda.MANIFEST: 5232}
    assert all(s["width"] == [224, 224, 224] for s in summary["sizes"]["by_label"].values())
