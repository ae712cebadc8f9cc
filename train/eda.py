"""``python -m train eda``: look at a data folder before training on it.

Much of what a model learns is settled before the first epoch: how classes and subtypes are
balanced on each side of the split, which sizes and shapes the films come in (the contract
squashes every film to one square, so a shape that differs by class is a shortcut), what the
films look like once prepared, and what the training augmentation makes of them. Each number
and picture here comes from the code ``fit`` runs (``data.scan``, ``data.patient_split``,
``cxr_edge.preprocess.load_image``, ``train.pipeline`` with ``train.augment``) and the
:class:`RunConfig` a fit with the same options would have, so it shows what a run sees.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from cxr_edge.review.plots import DPI, figure
from cxr_edge.preprocess import Contract, ImageReadError, load_image
from train import data
from train.config import RunConfig, augment_config

OFFICIAL_SPLITS = ("train", "val")
FLAT = "all"  # the split of a folder without train/ and val/, such as fullres/{NORMAL,PNEUMONIA}/
MANIFEST = "manifest.csv"
JSON_FILE = "eda.json"
MD_FILE = "eda.md"
SAMPLES_PER_ROW = 6
AUGMENTED_VIEWS = 5
HISTOGRAM_BINS = 24
ROWS = (*data.SUBTYPES, "UNKNOWN")  # subtypes in the order tables and figures show them
COLORS = {"NORMAL": "tab:blue", "BACTERIAL": "tab:orange", "VIRAL": "tab:red", "UNKNOWN": "tab:gray",
          "PNEUMONIA": "tab:orange"}
CAPTIONS = {
    "balance.png": "Share of each subtype per split: the official folders and fit's patient split.",
    "sizes.png": "Original width, height and aspect ratio (width / height) per class, before the squash to the "
                 "model's square.",
    "samples.png": "Random films per subtype, as the model receives them (the preprocessing contract).",
    "augmentation.png": "A few films through fit's training pipeline: the contract's input, then augmented views.",
}
Size = tuple[int, int]


def scan_folder(root: Path) -> tuple[list[data.Record], list[Path]]:
    """Records of the official ``{train,val}/{NORMAL,PNEUMONIA}/`` layout as fit scans it, or of a flat
    ``{NORMAL,PNEUMONIA}/`` folder (such as fullres/), whose records get the split :data:`FLAT`."""
    if any((root / split).is_dir() for split in OFFICIAL_SPLITS):
        return data.scan(root, OFFICIAL_SPLITS)
    records, unparsed = data.scan(root, ("",))
    return [dataclasses.replace(r, split=FLAT) for r in records], unparsed


def class_balance(records: Sequence[data.Record], val_fraction: float, seed: int) -> dict[str, Any]:
    """Counts per official split folder and per side of fit's patient split (same fraction and seed: same split)."""
    train_idx, val_idx = data.patient_split(records, val_fraction, seed)
    return {
        "all": data.counts(records),
        "official_split": {split: data.counts([r for r in records if r.split == split])
                           for split in sorted({r.split for r in records})},
        "patient_split": {"val_fraction": val_fraction, "seed": seed,
                          "train": data.counts([records[i] for i in train_idx]),
                          "val": data.counts([records[i] for i in val_idx])},
    }


def manifest_sizes(root: Path) -> dict[Path, Size]:
    """(width, height) per file from ``root/manifest.csv`` when it has those columns: no film is opened.

    A row's file may sit under its split folder or, in a flat folder, under its label alone.
    """
    path = root / MANIFEST
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not {"split", "label", "filename", "width", "height"} <= set(reader.fieldnames or ()):
            return {}
        sizes: dict[Path, Size] = {}
        for row in reader:
            size = (int(row["width"]), int(row["height"]))
            sizes[root / row["split"] / row["label"] / row["filename"]] = size
            sizes[root / row["label"] / row["filename"]] = size
    return sizes


def header_size(path: Path) -> Size:
    """(width, height) from the file's header (Pillow decodes no pixels); other formats (DICOM) through the contract."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        prepared = load_image(path, Contract(8, 8))  # raises ImageReadError for a film fit could not read either
        return prepared.width, prepared.height


def film_sizes(root: Path, records: Sequence[data.Record]
               ) -> tuple[dict[Path, Size], dict[str, int], list[str]]:
    """Original sizes of ``records`` -> (size per path, how many came from each source, unreadable files)."""
    known = manifest_sizes(root)
    sizes: dict[Path, Size] = {}
    source: Counter[str] = Counter()
    unreadable = []
    for rec in records:
        if rec.path in known:
            sizes[rec.path] = known[rec.path]
            source[MANIFEST] += 1
            continue
        try:
            sizes[rec.path] = header_size(rec.path)
            source["file headers"] += 1
        except ImageReadError as exc:
            unreadable.append(f"{rec.path.relative_to(root)}: {exc}")
    return sizes, dict(source), unreadable


def _measures(records: Sequence[data.Record], sizes: dict[Path, Size]) -> dict[str, np.ndarray]:
    wh = np.array([sizes[r.path] for r in records if r.path in sizes], float).reshape(-1, 2)
    return {"width": wh[:, 0], "height": wh[:, 1], "aspect": wh[:, 0] / np.maximum(wh[:, 1], 1)}


def size_summary(records: Sequence[data.Record], sizes: dict[Path, Size]) -> dict[str, Any]:
    """Per class: min/median/max of width, height and aspect ratio, and histograms on shared bins."""
    labels = [label for label in data.CLASS_DIRS if any(r.label == label for r in records)]
    by_label = {label: _measures([r for r in records if r.label == label], sizes) for label in labels}
    everything = _measures(records, sizes)
    summary: dict[str, Any] = {"by_label": {}, "histograms": {}}
    for label, measures in by_label.items():
        summary["by_label"][label] = {"images": len(measures["width"])} | {
            name: [round(float(f(values)), 3) for f in (np.min, np.median, np.max)] if len(values) else []
            for name, values in measures.items()}
    for name, values in everything.items():
        if not len(values):
            continue
        edges = np.histogram_bin_edges(values, HISTOGRAM_BINS)
        summary["histograms"][name] = {"edges": np.round(edges, 4).tolist()} | {
            label: np.histogram(measures[name], edges)[0].tolist() for label, measures in by_label.items()}
    return summary


def pick_samples(records: Sequence[data.Record], per_row: int, seed: int) -> dict[str, list[data.Record]]:
    """Up to ``per_row`` films of each subtype, drawn with ``seed``: the rows of the sample grid."""
    groups: dict[str, list[data.Record]] = defaultdict(list)
    for rec in records:
        groups[rec.subtype].append(rec)
    rng = np.random.default_rng(seed)
    picked = {}
    for subtype in ROWS:
        films = groups[subtype]
        if films:
            picked[subtype] = [films[i] for i in sorted(rng.choice(len(films), min(per_row, len(films)), replace=False))]
    return picked


def contract_pixels(path: Path, contract: Contract) -> np.ndarray:
    """The film as the model receives it."""
    try:
        return load_image(path, contract).pixels
    except ImageReadError as exc:
        raise data.DataError(f"{path}: {exc}") from exc


def augmented_views(films: np.ndarray, cfg: RunConfig, views: int) -> np.ndarray:
    """``views`` passes of fit's training pipeline over ``films`` (one batch, as in training) -> (views, N, H, W)."""
    import tensorflow as tf  # lazy: only this figure needs TensorFlow

    from train import pipeline

    tf.random.set_seed(cfg.seed)
    ds = pipeline.dataset(films, np.zeros(len(films)), len(films), augment_cfg=augment_config(cfg)).repeat(views)
    return np.stack([images.numpy()[..., 0] for images, _ in ds])


def analyse(cfg: RunConfig) -> tuple[dict[str, Any], dict[Path, Size], dict[str, list[data.Record]]]:
    """The numbers of eda.json, the films' sizes and the sampled films, for ``cfg.data`` as ``cfg`` would train."""
    root = Path(cfg.data)
    records, unparsed = scan_folder(root)
    sizes, source, unreadable = film_sizes(root, records)
    augmentation = augment_config(cfg)
    summary = {
        "data": str(root),
        "images": len(records),
        "unparsed_filenames": len(unparsed),
        "unparsed_examples": [p.name for p in unparsed[:10]],
        "balance": class_balance(records, cfg.val_fraction, cfg.patient_split_seed),
        "sizes": {"source": source, "unreadable": unreadable} | size_summary(records, sizes),
        "contract": cfg.contract.to_manifest(),
        "augmentation": dataclasses.asdict(augmentation) if augmentation else None,
    }
    return summary, sizes, pick_samples([r for r in records if r.path in sizes], SAMPLES_PER_ROW, cfg.seed)


def write_eda(cfg: RunConfig, out: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Write eda.json, eda.md and the figures for ``cfg.data`` into ``out``; returns eda.json's content."""
    summary, sizes, samples = analyse(cfg)
    pixels = {r.path: contract_pixels(r.path, cfg.contract) for row in samples.values() for r in row}
    figures = {"balance.png": balance_figure(summary["balance"]), "sizes.png": sizes_figure(summary["sizes"]),
               "samples.png": samples_figure(samples, pixels, sizes)}
    firsts = [row[0] for row in samples.values()]
    if summary["augmentation"]:
        views = augmented_views(np.stack([pixels[r.path] for r in firsts]), cfg, AUGMENTED_VIEWS)
        figures["augmentation.png"] = augmentation_figure(firsts, pixels, views)
    summary["samples"] = {subtype: [str(r.path.relative_to(cfg.data)) for r in row]
                          for subtype, row in samples.items()}
    summary["figures"] = list(figures)
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(out / name, dpi=DPI)
    (out / JSON_FILE).write_text(json.dumps(summary, indent=1))
    (out / MD_FILE).write_text(markdown(summary))
    log(f"{summary['images']} films; wrote {MD_FILE}, {JSON_FILE} and {len(figures)} figures to {out}")
    return summary


def balance_rows(balance: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(name, counts) of every set the balance is shown for: official folders, then fit's two sides."""
    rows = [("whole folder" if split == FLAT else f"official {split}", counts)
            for split, counts in balance["official_split"].items()]
    return rows + [(f"patient split {side}", balance["patient_split"][side]) for side in ("train", "val")]


def balance_figure(balance: dict[str, Any]):
    """100%-stacked bars of subtypes per set, each segment labelled with its count and share."""
    rows = balance_rows(balance)
    fig = figure((8.5, 0.62 * len(rows) + 1.5))
    ax = fig.add_subplot()
    subtypes = ["NORMAL", *pneumonia_subtypes(balance["all"])]
    for y, (_, counts) in enumerate(rows):
        left = 0.0
        for subtype in subtypes:
            n = counts["subtype"].get(subtype, 0)
            share = n / max(counts["images"], 1)
            ax.barh(y, share, left=left, color=COLORS[subtype], label=subtype if y == 0 else None)
            if share >= 0.07:
                ax.text(left + share / 2, y, f"{n} ({share:.0%})", ha="center", va="center", fontsize=8, color="white")
            left += share
    ax.set_yticks(range(len(rows)), [f"{name}\n{c['images']} films, {c['patients']} patients" for name, c in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1), xlabel="share of films",
           title=f"class balance (patient split: {balance['patient_split']['val_fraction']:.0%} of films to "
                 f"validation, seed {balance['patient_split']['seed']})")
    ax.legend(ncols=len(subtypes), loc="lower center", bbox_to_anchor=(0.5, 1.08), fontsize=8, frameon=False)
    return fig


def sizes_figure(sizes: dict[str, Any]):
    """Histograms of width, height and aspect ratio per class, medians in the titles."""
    fig = figure((12, 3.6))
    units = {"width": "width (px)", "height": "height (px)", "aspect": "aspect ratio (width / height)"}
    for k, (name, hist) in enumerate(sizes["histograms"].items()):
        ax = fig.add_subplot(1, 3, k + 1)
        edges = np.array(hist["edges"])
        medians = []
        for label, stats in sizes["by_label"].items():
            ax.stairs(hist[label], edges, fill=True, alpha=0.5, color=COLORS[label], label=f"{label} ({stats['images']})")
            medians.append(f"{label} {stats[name][1]:.{2 if name == 'aspect' else 0}f}")
        ax.set(xlabel=units[name], ylabel="films", title="median: " + ", ".join(medians))
        ax.title.set_fontsize(8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _film_axes(fig, rows: int, cols: int, index: int, image: np.ndarray, title: str):
    ax = fig.add_subplot(rows, cols, index)
    ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=7)
    return ax


def samples_figure(samples: dict[str, list[data.Record]], pixels: dict[Path, np.ndarray],
                   sizes: dict[Path, Size]):
    """One row per subtype; each film titled with its name and original size."""
    cols = max(len(row) for row in samples.values())
    fig = figure((1.9 * cols, 2.15 * len(samples)))
    for r, (subtype, row) in enumerate(samples.items()):
        for c, rec in enumerate(row):
            width, height = sizes[rec.path]
            ax = _film_axes(fig, len(samples), cols, r * cols + c + 1, pixels[rec.path],
                            f"{rec.path.stem[:26]}\n{width}x{height}")
            if c == 0:
                ax.set_ylabel(subtype, fontsize=9, color=COLORS[subtype], fontweight="bold")
    return fig


def augmentation_figure(films: Sequence[data.Record], pixels: dict[Path, np.ndarray], views: np.ndarray):
    """One row per film: the contract's input, then each augmented view."""
    cols = 1 + len(views)
    fig = figure((1.9 * cols, 2.15 * len(films)))
    for r, rec in enumerate(films):
        ax = _film_axes(fig, len(films), cols, r * cols + 1, pixels[rec.path], f"input\n{rec.path.stem[:26]}")
        ax.set_ylabel(rec.subtype, fontsize=9, color=COLORS[rec.subtype], fontweight="bold")
        for v, view in enumerate(views):
            _film_axes(fig, len(films), cols, r * cols + v + 2, view[r], f"augmented {v + 1}")
    return fig


def pneumonia_subtypes(counts: dict[str, Any]) -> list[str]:
    """The subtypes of PNEUMONIA films present in ``counts``, in the order tables show them."""
    return [s for s in ROWS[1:] if counts["subtype"].get(s)]


def _count_cells(counts: dict[str, Any], subtypes: Sequence[str]) -> list[str]:
    normal = counts["label"].get("NORMAL", 0)
    return [str(counts["images"]), str(counts["patients"]), str(normal), str(counts["label"].get("PNEUMONIA", 0)),
            *(str(counts["subtype"].get(s, 0)) for s in subtypes), f"{normal / max(counts['images'], 1):.1%}"]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(summary: dict[str, Any]) -> str:
    """eda.md: the counts and sizes as tables, and an index of the figures."""
    balance, sizes = summary["balance"], summary["sizes"]
    split = balance["patient_split"]
    lines = [f"# Data: {summary['data']}", "",
             f"{summary['images']} films of {balance['all']['patients']} patients; {summary['unparsed_filenames']} "
             "filenames match no pattern (each counts as its own patient).", "", "## Class balance", "",
             f"Patient split as `fit` makes it: whole patients, stratified by subtype, {split['val_fraction']:.0%} of "
             f"films to validation, seed {split['seed']}.", ""]
    subtypes = pneumonia_subtypes(balance["all"])
    header = ["set", "films", "patients", *data.CLASS_DIRS, *(f"of which {s}" for s in subtypes), "NORMAL share"]
    rows = balance_rows(balance) + ([("all", balance["all"])] if len(balance["official_split"]) > 1 else [])
    lines += _table(header, [[name, *_count_cells(c, subtypes)] for name, c in rows])
    source = ", ".join(f"{n} from {where}" for where, n in sizes["source"].items())
    lines += ["", f"## Original sizes ({source}; {len(sizes['unreadable'])} unreadable)", ""]
    lines += _table(["class", "films", "width min/median/max", "height min/median/max", "aspect min/median/max"],
                    [[label, str(s["images"]), *("/".join(f"{v:g}" for v in s[m]) for m in ("width", "height", "aspect"))]
                     for label, s in sizes["by_label"].items()])
    lines += [f"- {line}" for line in sizes["unreadable"]]
    lines += ["", "## Figures", ""] + [f"- [{name}]({name}): {CAPTIONS[name]}" for name in summary["figures"]]
    augmentation = summary["augmentation"]
    lines += ["", "Augmentation: " + (", ".join(f"{k} {v}" for k, v in augmentation.items()) if augmentation
                                      else "none (this configuration trains on clean films)"), ""]
    return "\n".join(lines)
