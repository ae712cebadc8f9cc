"""Re-make the real sample films of ``sample_data/films/`` from the Kermany training split.

    python sample_data/make_films.py DATA      # DATA: Kermany's train/ at full size (NORMAL/, PNEUMONIA/)

Ten pediatric frontal chest films from the **training** split of Kermany et al. (CC BY 4.0,
see ``sample_data/README.md``), so the model has seen every one of them: they demonstrate
the quick start, they never measure accuracy. Each original is checked against its sha256
(a different file under the same name is refused), turned to 8-bit grey, reduced to at most
``LONGEST`` px on its long side (Lanczos) and saved as JPEG quality ``QUALITY``; the class
folders and Kermany file names stay, so ``cxr-edge evaluate sample_data/films`` reads the
labels (and, for ``subtype``, bacterial or viral from the name). ``manifest.csv`` records
each film's source and both sha256s. The output is the same for a given Pillow version.

They were chosen among the 200 originals of ``../shared/data/fullres`` as films that the
shipped gate lets through and that the shipped ``pneumonia`` and ``subtype`` bundles
classify right (checked with ``cxr-edge classify`` on the reduced files), with a margin,
from distinct patients, some below and some at the 8-bit output's ceiling.
"""

from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
LONGEST = 1024
QUALITY = 85
MANIFEST = "manifest.csv"
COLUMNS = ("file", "label", "source", "source_sha256", "width", "height", "bytes", "sha256")

# (class folder / Kermany file name, sha256 of the original)
FILMS = [
    ("NORMAL/IM-0117-0001.jpeg", "05bc425eda168493cbe38eea4c079edbbfad1e17e3477892740b1fce97b69957"),
    ("NORMAL/IM-0216-0001.jpeg", "8e7af1232568aeb8c752a21ab01580828b98d75dc2940d5f4d480d0b28f42521"),
    ("NORMAL/IM-0350-0001.jpeg", "f6bc31257550a28ee27ebfddd1f6e4a329df87797bf020d8921325fc8e5dd4f3"),
    ("NORMAL/IM-0448-0001.jpeg", "61fec018820794e2702b835bc7916ee3dc1569872cd0004c4399e1ea69f19118"),
    ("PNEUMONIA/person1449_bacteria_3743.jpeg", "cd412fdd218e922714232c23882bbf5cdfc67e7677fdc5459ee75594dbecd756"),
    ("PNEUMONIA/person489_bacteria_2067.jpeg", "999c6f33ffb9b517bc15954efe255ec80fe0fcf52786870cab6cd0cde0c7ffef"),
    ("PNEUMONIA/person258_bacteria_1212.jpeg", "ae930714ef7178147b628987f9e006b6b2f93f304f7201e8d5411807ba6f6f40"),
    ("PNEUMONIA/person1021_virus_1711.jpeg", "eeab077dc1b1022180f0e286cd89d6260919476ea3541f92aa323444213e15c1"),
    ("PNEUMONIA/person1502_virus_2612.jpeg", "e1eda174649a52072a9e5f4e66af2a975221b268c82c9382b0bf35c6340ee941"),
    ("PNEUMONIA/person434_virus_884.jpeg", "684ea2ad3c12eb3539518743a0a632a881bfd8befc247241100a63441aaa89b1"),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reduced(original: Path) -> Image.Image:
    """The original in 8-bit grey, at most ``LONGEST`` px on its long side."""
    with Image.open(original) as img:
        grey = img.convert("L")
    scale = LONGEST / max(grey.size)
    if scale >= 1:
        return grey
    return grey.resize((round(grey.width * scale), round(grey.height * scale)), Image.Resampling.LANCZOS)


def make_film(data: Path, name: str, expected: str, out_dir: Path) -> dict[str, object]:
    """Write one reduced film; its manifest row."""
    original = data / name
    found = sha256(original)
    if found != expected:
        raise SystemExit(f"{original}: sha256 {found}, expected {expected}: not the Kermany original")
    target = out_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    film = reduced(original)
    film.save(target, quality=QUALITY, optimize=True)
    return {"file": name, "label": name.split("/")[0], "source": f"Kermany et al. 2018, train/{name}",
            "source_sha256": expected, "width": film.width, "height": film.height,
            "bytes": target.stat().st_size, "sha256": sha256(target)}


def main(data: Path, out_dir: Path = HERE / "films") -> None:
    rows = [make_film(data, name, expected, out_dir) for name, expected in FILMS]
    with open(out_dir / MANIFEST, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} films ({sum(int(r['bytes']) for r in rows) / 1e6:.2f} MB) and {MANIFEST} to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    main(Path(sys.argv[1]))
