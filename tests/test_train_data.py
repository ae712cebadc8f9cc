"""train.data: filename parsing, the patient-grouped split, the pixel cache."""

from __future__ import annotations

import os
import types
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_edge.preprocess import Contract
from train import data
from train_data import make_kermany

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stem, label, expected", [
    ("person1_bacteria_1", "PNEUMONIA", ("person1", "BACTERIAL")),
    ("person1430_bacteria_3695", "PNEUMONIA", ("person1430", "BACTERIAL")),
    ("person25_virus_59", "PNEUMONIA", ("person25", "VIRAL")),
    ("person1000_virus_1681_1", "PNEUMONIA", ("person1000", "VIRAL")),
    ("IM-0115-0001", "NORMAL", ("IM-115", "NORMAL")),
    ("IM-0007-0001-0002", "NORMAL", ("IM-7", "NORMAL")),
    ("NORMAL2-IM-0115-0001", "NORMAL", ("IM-115", "NORMAL")),
    ("NORMAL2-IM-1234-0001-0002", "NORMAL", ("IM-1234", "NORMAL")),
])
def test_filenames_give_patient_and_subtype(stem, label, expected):
    assert data.parse_name(stem, label) == expected


@pytest.mark.parametrize("stem, label, subtype", [
    ("scan_0001", "NORMAL", "NORMAL"),
    ("scan_0001", "PNEUMONIA", "UNKNOWN"),
    ("IM-0115-0001", "PNEUMONIA", "UNKNOWN"),  # a normal-style name in the pneumonia folder
    ("person3_fungus_4", "PNEUMONIA", "UNKNOWN"),
])
def test_names_matching_no_pattern_have_no_patient(stem, label, subtype):
    assert data.parse_name(stem, label) == ("", subtype)


def test_scan_counts_unparsed_files_and_gives_each_its_own_patient(tmp_path):
    root = make_kermany(tmp_path, n_patients=3)
    some_film = root / "train" / "NORMAL" / "IM-0001-0001.jpeg"
    (root / "train" / "PNEUMONIA" / "odd name.jpeg").write_bytes(some_film.read_bytes())
    (root / "train" / "NORMAL" / "notes.txt").write_text("not an image")
    records, unparsed = data.scan(root)
    assert [p.name for p in unparsed] == ["odd name.jpeg"]
    assert len(records) == 9  # 4 films (patient 3 has two) x 2 classes + the odd one; notes.txt skipped
    odd = next(r for r in records if r.path.name == "odd name.jpeg")
    assert odd.patient == "file:odd name.jpeg" and odd.subtype == "UNKNOWN"


def test_scan_takes_the_image_formats_the_edge_tool_reads(tmp_path):
    root = make_kermany(tmp_path, n_patients=1)
    film = Image.open(root / "train" / "NORMAL" / "IM-0001-0001.jpeg")
    for name in ("IM-0002-0001.png", "IM-0003-0001.bmp", "IM-0004-0001.tif"):
        film.save(root / "train" / "NORMAL" / name)
    records, _ = data.scan(root)
    assert sorted(r.path.suffix for r in records if r.label == "NORMAL") == [".bmp", ".jpeg", ".png", ".tif"]


def test_scan_of_a_missing_or_empty_folder_says_what_to_fix(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.scan(tmp_path / "nowhere")
    with pytest.raises(data.DataError, match="no images"):
        data.scan(tmp_path)


def _records(n_patients: int, films: int, subtype: str, prefix: str) -> list[data.Record]:
    label = "NORMAL" if subtype == "NORMAL" else "PNEUMONIA"
    return [data.Record(Path(f"{prefix}{p}_{k}.jpeg"), "train", label, subtype, f"{prefix}{p}")
            for p in range(n_patients) for k in range(1 + (p % films))]


RECORDS = _records(120, 4, "NORMAL", "n") + _records(200, 3, "BACTERIAL", "b") + _records(90, 2, "VIRAL", "v")


def test_split_puts_every_patient_on_one_side_only():
    train_idx, val_idx = data.patient_split(RECORDS, 0.2, seed=7)
    assert sorted(train_idx + val_idx) == list(range(len(RECORDS)))
    train_patients = {RECORDS[i].patient for i in train_idx}
    val_patients = {RECORDS[i].patient for i in val_idx}
    assert train_patients and val_patients and not train_patients & val_patients


def test_split_is_stratified_by_subtype():
    _, val_idx = data.patient_split(RECORDS, 0.2, seed=7)
    totals = Counter(r.subtype for r in RECORDS)
    in_val = Counter(RECORDS[i].subtype for i in val_idx)
    for subtype, total in totals.items():
        assert 0.2 <= in_val[subtype] / total <= 0.25, subtype


def test_split_depends_only_on_the_seed():
    assert data.patient_split(RECORDS, 0.2, seed=1) == data.patient_split(list(RECORDS), 0.2, seed=1)
    assert data.patient_split(RECORDS, 0.2, seed=1) != data.patient_split(RECORDS, 0.2, seed=2)


def test_split_refuses_a_fraction_outside_0_1():
    with pytest.raises(ValueError, match="between 0 and 1"):
        data.patient_split(RECORDS, 1.0, seed=1)


def test_pixels_come_from_the_cache_after_the_first_decode(tmp_path, monkeypatch):
    records, _ = data.scan(make_kermany(tmp_path / "data", n_patients=2))
    contract = Contract(64, 48)
    first, sizes = data.load_pixels(records, contract, tmp_path / "cache")
    assert first.shape == (len(records), 48, 64) and first.dtype == np.uint8 and sizes[0] == (120, 96)

    def no_decoding(*_):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(data, "decode_all", no_decoding)
    again, _ = data.load_pixels(records, contract, tmp_path / "cache")
    np.testing.assert_array_equal(first, again)
    with pytest.raises(AssertionError, match="decoded again"):  # another contract is another cache
        data.load_pixels(records, Contract(64, 48, normalize="autocontrast"), tmp_path / "cache")


def test_another_cxr_edge_pillow_or_decoding_code_is_another_cache(tmp_path, monkeypatch):
    import PIL

    import cxr_edge

    records, _ = data.scan(make_kermany(tmp_path / "data", n_patients=1))
    decoder = tmp_path / "decoder.py"
    decoder.write_text("LEVELS = 256\n")
    module = types.ModuleType("decoder")
    module.__file__ = str(decoder)
    monkeypatch.setattr(data, "DECODER_MODULES", (module,))
    keys = [data.cache_key(records, Contract())]
    decoder.write_text("LEVELS = 255\n")
    keys.append(data.cache_key(records, Contract()))
    monkeypatch.setattr(cxr_edge, "__version__", "99.0")
    keys.append(data.cache_key(records, Contract()))
    monkeypatch.setattr(PIL, "__version__", "1.0")
    keys.append(data.cache_key(records, Contract()))
    assert len(set(keys)) == 4


def test_an_unreadable_image_names_the_file(tmp_path):
    root = make_kermany(tmp_path, n_patients=1)
    bad = root / "train" / "NORMAL" / "IM-0099-0001.jpeg"
    bad.write_bytes(b"not a jpeg")
    records, _ = data.scan(root)
    with pytest.raises(data.DataError, match="IM-0099-0001.jpeg"):
        data.load_pixels(records, Contract(), None)


def _shared_data() -> Path | None:
    path = Path(os.environ.get("CXR_DATA", REPO.parent / "shared" / "data" / "chest_xray_224"))
    return path if (path / "train").is_dir() else None


@pytest.mark.needs_data
@pytest.mark.skipif(_shared_data() is None, reason="Kermany data not found ($CXR_DATA or ../shared/data)")
def test_every_real_filename_parses_and_the_real_split_is_leak_free():
    records, unparsed = data.scan(_shared_data())
    assert unparsed == []
    train_idx, val_idx = data.patient_split(records, 0.2, seed=42)
    assert not {records[i].patient for i in train_idx} & {records[i].patient for i in val_idx}
