"""A generated Kermany-style folder for the training tests (no real image is ever committed)."""

from __future__ import annotations

from pathlib import Path

from cxr_edge.testing.synthetic import synthetic_xray


def kermany_names(n_patients: int) -> list[tuple[str, str]]:
    """(class folder, filename) pairs covering every filename pattern, 2 films for some patients."""
    names = []
    for p in range(1, n_patients + 1):
        films = 2 if p % 3 == 0 else 1
        for k in range(films):
            names.append(("NORMAL", f"IM-{p:04d}-{k + 1:04d}.jpeg" if p % 2 else f"NORMAL2-IM-{p:04d}-{k + 1:04d}-0001.jpeg"))
            kind = "bacteria" if p % 2 else "virus"
            names.append(("PNEUMONIA", f"person{p}_{kind}_{10 * p + k}.jpeg"))
    return names


def make_kermany(root: Path, n_patients: int = 18, size: tuple[int, int] = (120, 96)) -> Path:
    """Write ``root/train/{NORMAL,PNEUMONIA}`` of synthetic films (pneumonia ones carry lesions)."""
    for i, (label, name) in enumerate(kermany_names(n_patients)):
        folder = root / "train" / label
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_xray(i, size, lesion=label == "PNEUMONIA", n_lesions=2).save(folder / name, quality=90)
    return root
