"""Labelled folders: one subfolder per class, named by a model's labels, and what each image truly is.

Read by ``cxr-edge evaluate`` and by ``convert`` (its parity and calibration images), apart
from the evaluation itself so that reading a folder pulls in no engine, metrics or plots.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from cxr_edge.discover import Found, is_hidden, walk
from cxr_edge.review.kermany import parse_name

if TYPE_CHECKING:
    from cxr_edge.bundle import Bundle

KERMANY_POSITIVE = "PNEUMONIA"
#: File-name word -> the label names it may have in a model, for a Kermany ``PNEUMONIA/`` folder.
FILENAME_SUBTYPES = {"BACTERIAL": ("BACTERIAL", "BACTERIA"), "VIRAL": ("VIRAL", "VIRUS")}


class DataLayoutError(Exception):
    """The labelled folder does not fit the model (empty, unknown classes, no images...)."""


@dataclasses.dataclass(frozen=True)
class Truth:
    """What an image is: ``positive`` for the pneumonia metrics, ``label`` when known exactly."""

    positive: bool
    label: str | None  # None: positive, subtype unknown (excluded from multiclass metrics)

    @property
    def name(self) -> str:
        return self.label or KERMANY_POSITIVE


def class_folders(root: Path, bundle: Bundle) -> dict[str, str]:
    """Subfolder name -> the label (or ``PNEUMONIA``) it stands for; refuse unknown names."""
    if not root.is_dir():
        raise DataLayoutError(f"{root} is not a folder")
    accepted = {label.upper(): label for label in bundle.labels}
    if bundle.task == "multiclass" and any(_subtype_label(word, bundle) for word in FILENAME_SUBTYPES):
        accepted.setdefault(KERMANY_POSITIVE, KERMANY_POSITIVE)
    try:
        # Something named like a class that is no folder (a link to an unmounted share) is kept:
        # walking it gives an error row, where skipping it would drop the class unsaid.
        folders = sorted(
            e.name for e in os.scandir(root)
            if (e.is_dir() or e.name.upper() in accepted) and not is_hidden(e.name)
        )
    except OSError as exc:
        raise DataLayoutError(f"{root}: cannot list the folder ({exc.strerror})") from exc
    expected = ", ".join(sorted(accepted.values()))
    if not folders:
        raise DataLayoutError(f"{root} has no class subfolders: expected folders named {expected}")
    unknown = [name for name in folders if name.upper() not in accepted]
    if unknown:
        raise DataLayoutError(
            f"{root}: folder(s) {', '.join(unknown)} match no label of model {bundle.name} "
            f"(its labels: {', '.join(bundle.labels)}); expected folders named {expected}"
        )
    return {name: accepted[name.upper()] for name in folders}


def truth_of(folder_label: str, filename: str, bundle: Bundle) -> Truth:
    """The ground truth of one file from its class folder (and, in ``PNEUMONIA/``, its name)."""
    if folder_label in bundle.labels:
        return Truth(positive=folder_label != bundle.negative_label, label=folder_label)
    subtype = parse_name(PurePath(filename).stem, KERMANY_POSITIVE)[1]
    return Truth(positive=True, label=_subtype_label(subtype, bundle) if subtype in FILENAME_SUBTYPES else None)


def _subtype_label(subtype: str, bundle: Bundle) -> str | None:
    """The model's label for a file-name subtype, if it has one."""
    return next((label for label in FILENAME_SUBTYPES[subtype] if label in bundle.labels), None)


def labelled_inputs(root: str | Path, bundle: Bundle, recursive: bool = True) -> list[tuple[Found, Truth]]:
    """Every image in the class folders of ``root`` with its truth, in a stable order.

    Images lying directly in ``root`` have no class and are not listed.
    """
    root = Path(root)
    items = []
    for folder, label in class_folders(root, bundle).items():
        for found in walk(root / folder, f"{folder}/", recursive):  # named below DIR: NORMAL/a.jpeg
            items.append((found, truth_of(label, Path(found.path).name, bundle)))
    if not items:
        raise DataLayoutError(f"no image files in the class folders of {root}")
    return items
