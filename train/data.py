"""Kermany-style folders -> labelled records, a patient-grouped split and a pixel cache.

Why patients: many patients have several films, and an image-level split puts the same
child on both sides, which inflates validation scores. Filenames carry the patient id
(``personNNN_bacteria_MMM.jpeg``, ``IM-PPPP-SSSS.jpeg``, ``NORMAL2-IM-PPPP-SSSS.jpeg``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import PIL

import cxr_edge
from cxr_edge import dicom, preprocess
from cxr_edge.discover import is_hidden, looks_like_image
from cxr_edge.review.kermany import parse_name
from cxr_edge.preprocess import Contract, ImageReadError, load_image

CLASS_DIRS = ("NORMAL", "PNEUMONIA")
SUBTYPES = ("NORMAL", "BACTERIAL", "VIRAL")
TASK_LABELS = {"binary": ("NORMAL", "PNEUMONIA"), "subtype": SUBTYPES}
DECODER_MODULES = (preprocess, dicom)  # the code that turns a file into pixels


class DataError(Exception):
    """The data folder is missing or unusable; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Record:
    """One labelled image: where it is, whose it is, and what it shows."""

    path: Path
    split: str  # official split folder: train or val
    label: str  # NORMAL or PNEUMONIA (the folder)
    subtype: str  # NORMAL, BACTERIAL, VIRAL or UNKNOWN (from the filename)
    patient: str  # patient key, or "file:<name>" when the name matches no pattern

    def target(self, task: str) -> int:
        """Class index for ``task`` (binary or subtype)."""
        value = self.label if task == "binary" else self.subtype
        return TASK_LABELS[task].index(value)


def scan(root: Path, splits: Sequence[str] = ("train", "val")) -> tuple[list[Record], list[Path]]:
    """List ``root/{split}/{NORMAL,PNEUMONIA}/*``; return records and the unparsed names.

    A file counts by the edge tool's extension rule: a model learns from every film it could be shown.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist (give --data or set $CXR_DATA)")
    records, unparsed = [], []
    for split in splits:
        for label in CLASS_DIRS:
            folder = root / split / label
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if is_hidden(path.name) or not looks_like_image(path):  # the edge tool's rule
                    continue
                patient, subtype = parse_name(path.stem, label)
                if not patient:
                    unparsed.append(path)
                    patient = f"file:{path.name}"
                records.append(Record(path, split, label, subtype, patient))
    if not records:
        raise DataError(f"no images under {root}/{{{','.join(splits)}}}/{{NORMAL,PNEUMONIA}}/")
    return records, unparsed


def patient_strata(records: Sequence[Record]) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
    """Each patient's record indices, and the patients of each stratum (their most common subtype), sorted."""
    by_patient: dict[str, list[int]] = defaultdict(list)
    for i, rec in enumerate(records):
        by_patient[rec.patient].append(i)
    strata: dict[str, list[str]] = defaultdict(list)
    for patient, idx in sorted(by_patient.items()):
        stratum = Counter(records[i].subtype for i in idx).most_common(1)[0][0]
        strata[stratum].append(patient)
    return by_patient, strata


def take_share(patients: Sequence[str], by_patient: dict[str, list[int]], fraction: float) -> list[int]:
    """The images of ``patients``, in order, until they hold ``fraction`` of all their images."""
    target, taken, chosen = fraction * sum(len(by_patient[p]) for p in patients), 0, []
    for patient in patients:
        if taken >= target:
            break
        chosen.extend(by_patient[patient])
        taken += len(by_patient[patient])
    return chosen


def complement(n: int, val: Iterable[int]) -> tuple[list[int], list[int]]:
    """(train, val) indices of ``n`` records, given the validation ones."""
    held = set(val)
    return [i for i in range(n) if i not in held], sorted(held)


def patient_split(records: Sequence[Record], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, val): whole patients go to validation, stratified by subtype.

    Within each stratum (a patient's most common subtype) patients are shuffled with
    ``seed`` and moved to validation until it holds ``val_fraction`` of that stratum's
    images, so class and subtype proportions match on both sides.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val fraction must be between 0 and 1, not {val_fraction}")
    by_patient, strata = patient_strata(records)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for stratum in sorted(strata):
        patients = list(strata[stratum])
        rng.shuffle(patients)
        val.extend(take_share(patients, by_patient, val_fraction))
    return complement(len(records), val)


def read_val_patients(path: Path) -> set[str]:
    """The patient keys of a ``val_patients.txt``, one per line (blank lines ignored)."""
    return {line.strip() for line in Path(path).read_text().splitlines() if line.strip()}


def split_by_list(records: Sequence[Record], patients: set[str], source: Path) -> tuple[list[int], list[int]]:
    """Indices (train, val) with exactly the listed patients in validation."""
    val = [i for i, rec in enumerate(records) if rec.patient in patients]
    if not val or len(val) == len(records):
        raise DataError(f"--val-patients {source}: {len(val)} of {len(records)} images belong to its "
                        f"{len(patients)} patients; it must name some but not all (was it made for this data?)")
    return complement(len(records), val)


def decoder_fingerprint() -> dict[str, str]:
    """What makes the pixels besides the contract: another cxr-edge, Pillow, or edited decoding code
    (a checkout between releases) may decode the same file differently."""
    code = hashlib.sha256(b"".join(Path(inspect.getfile(m)).read_bytes() for m in DECODER_MODULES))
    return {"cxr_edge": cxr_edge.__version__, "pillow": PIL.__version__, "code": code.hexdigest()[:16]}


def cache_key(records: Iterable[Record], contract: Contract) -> str:
    """Hash of the contract, the decoder and the files (names, sizes, mtimes): a stale cache never matches."""
    header = {"contract": contract.to_manifest(), "decoder": decoder_fingerprint()}
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for rec in records:
        stat = rec.path.stat()
        digest.update(f"{rec.path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def decode_all(records: Sequence[Record], contract: Contract) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Decode every record through the shared contract -> (N, H, W) uint8 and original sizes."""
    pixels = np.empty((len(records), contract.height, contract.width), np.uint8)
    sizes = []
    for i, rec in enumerate(records):
        try:
            prepared = load_image(rec.path, contract)
        except ImageReadError as exc:
            raise DataError(f"{rec.path}: {exc}") from exc
        pixels[i] = prepared.pixels
        sizes.append((prepared.width, prepared.height))
    return pixels, sizes


def load_pixels(records: Sequence[Record], contract: Contract, cache_dir: Path | None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Decoded pixels for ``records``, from ``cache_dir`` when a matching cache exists."""
    if cache_dir is None:
        return decode_all(records, contract)
    key = cache_key(records, contract)
    pixels_file = Path(cache_dir) / f"pixels-{key}.npy"
    sizes_file = pixels_file.with_suffix(".sizes.json")
    if pixels_file.exists() and sizes_file.exists():
        return np.load(pixels_file), [tuple(s) for s in json.loads(sizes_file.read_text())]
    pixels, sizes = decode_all(records, contract)
    pixels_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pixels_file.with_suffix(".tmp.npy")
    np.save(tmp, pixels)
    tmp.replace(pixels_file)
    sizes_file.write_text(json.dumps(sizes))
    return pixels, sizes


def counts(records: Sequence[Record]) -> dict:
    """Images, patients, and images per class, subtype and official split folder."""
    return {
        "images": len(records),
        "patients": len({r.patient for r in records}),
        "label": dict(sorted(Counter(r.label for r in records).items())),
        "subtype": dict(sorted(Counter(r.subtype for r in records).items())),
        "official_split": dict(sorted(Counter(r.split for r in records).items())),
    }


def summarize(records: Sequence[Record], train_idx: Sequence[int], val_idx: Sequence[int],
              sizes: Sequence[tuple[int, int]], unparsed: Sequence[Path]) -> dict:
    """Counts per side, class, subtype and patients; original image sizes; unparsed names."""
    widths = np.array([w for w, _ in sizes]) if sizes else np.zeros(1)
    heights = np.array([h for _, h in sizes]) if sizes else np.zeros(1)
    return {
        "total_images": len(records),
        "unparsed_filenames": len(unparsed),
        "unparsed_examples": [p.name for p in unparsed[:10]],
        "train": counts([records[i] for i in train_idx]),
        "val": counts([records[i] for i in val_idx]),
        "original_size": {
            "width_min_median_max": [int(widths.min()), int(np.median(widths)), int(widths.max())],
            "height_min_median_max": [int(heights.min()), int(np.median(heights)), int(heights.max())],
        },
    }


def summary_text(summary: dict) -> str:
    """A few human lines for the console and the log."""
    lines = [f"{summary['total_images']} images, {summary['unparsed_filenames']} filenames match no pattern"]
    for name in ("train", "val"):
        s = summary[name]
        lines.append(f"  {name}: {s['images']} images of {s['patients']} patients; {s['label']}; {s['subtype']}")
    size = summary["original_size"]
    lines.append(f"  original width {size['width_min_median_max']}, height {size['height_min_median_max']} (min/median/max)")
    return "\n".join(lines)
