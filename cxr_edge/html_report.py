"""The visual triage report: one self-contained HTML page, most suspicious image first.

The flagged images come first, then the unreadable ones (never screened, so a clinician
must read them too: listed after the normals they would be the easiest to miss), then the
rest.

``classify --html report.html`` writes it next to the CSV. Everything is inline (thumbnails
and heatmaps as base64 data URIs, CSS in a ``<style>`` element, no script, no network), so
it opens from a USB stick in any browser on the device with no server. Rows are written one
by one after sorting, so memory holds the small results, never all the pictures.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import sys
from pathlib import Path
from typing import Sequence, TextIO

from PIL import Image
from tqdm import tqdm

from cxr_edge import __version__, explain
from cxr_edge.bundle import Bundle
from cxr_edge.dicom import PHI_COLUMNS
from cxr_edge.engine import ERROR, OK, REJECTED, Classifier, Result
from cxr_edge.preprocess import ImageReadError, load_image
from cxr_edge.report import input_note

THUMBNAIL = 160  # px, longest side
#: Printed above the table when it has heatmaps: a hot area reads as "the lesion is here" otherwise.
HEATMAP_CAVEAT = (
    "Heatmaps (flagged images only): colour marks where hiding that area lowers the model's score, "
    "scaled to each image's own largest drop. It shows what the model relies on, not where disease is, "
    "and colours cannot be compared between images."
)
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}
.meta{color:#555;margin-bottom:1em}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:middle}
th{background:#f3f3f3}
tr.flagged td.prediction{color:#b00020;font-weight:bold}
tr.error td{background:#fff4d6}
tr.error td.prediction{font-weight:bold}
.bar{display:inline-block;height:.7em;background:#b00020;margin-left:.5em}
img{display:block;image-rendering:auto}
.path{font-family:monospace;word-break:break-all}
.patient{font-family:system-ui,sans-serif;font-weight:bold}
"""


def _data_uri(image: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {"optimize": True}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _img(uri: str, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}" width="{THUMBNAIL}" height="{THUMBNAIL}">'


def order(results: Sequence[Result], negative_label: str) -> list[Result]:
    """Flagged images by probability, highest first (ties by path), then the unreadable ones,
    then the images not flagged, by probability too."""
    ok = sorted((r for r in results if r.status == OK), key=lambda r: (-(r.probability or 0.0), r.display))
    flagged = [r for r in ok if r.prediction != negative_label]
    unreadable = sorted((r for r in results if r.status != OK), key=lambda r: r.display)
    return flagged + unreadable + [r for r in ok if r.prediction == negative_label]


NOT_SCREENED = {ERROR: "unreadable: not screened", REJECTED: "rejected: not screened (not a frontal chest film?)"}


def verdict(result: Result, bundle: Bundle) -> str:
    """What a classified row says: flagged for a reader or not, never a diagnosis. A multiclass
    model's label is a weak hint with its own probability, not the screening score."""
    if result.prediction == bundle.negative_label:
        return "not flagged"
    if len(bundle.positive_labels) == 1:
        return "flagged for review"
    p = result.label_probs[bundle.labels.index(result.prediction)]
    return f"flagged for review; weak hint: {result.prediction} (P {p:.2f})"


def whose(result: Result) -> str:
    """The film's patient and study date from its DICOM header ("" when it has none): with DICOM
    files named by UID, the path alone does not tell a reader whose film a row is."""
    named = zip(PHI_COLUMNS, ("patient", "study"))  # the CSV's identifying columns, as the page names them
    return ", ".join(f"{label} {result.info[key]}" for key, label in named if result.info.get(key))


def _row(result: Result, classifier: Classifier, explain_flagged: bool, phi: bool) -> str:
    """One table row; the image is re-read through the contract for its thumbnail."""
    bundle = classifier.bundle
    path = html.escape(result.display)
    patient = whose(result) if phi else ""
    if patient:
        path += f'<br><span class="patient">{html.escape(patient)}</span>'
    if result.status != OK:
        return (f'<tr class="error"><td></td><td class="path">{path}</td>'
                f'<td class="prediction">{NOT_SCREENED[result.status]}</td><td></td>'
                f"<td>{html.escape(result.error)}</td><td></td></tr>")
    flagged = result.prediction != bundle.negative_label
    try:
        pixels = load_image(result.path, bundle.contract).pixels
    except ImageReadError as exc:  # changed or removed since it was classified
        thumb, heat, note = "", "", f"cannot show: {exc}"
    else:
        thumbnail = Image.fromarray(pixels).resize((THUMBNAIL, THUMBNAIL))
        thumb = _img(_data_uri(thumbnail, "JPEG"), result.display)
        heat, note = "", ""
        if flagged and explain_flagged:
            heatmap = explain.occlusion_map(classifier, pixels)
            picture = explain.overlay(pixels, heatmap.level).resize((THUMBNAIL, THUMBNAIL))
            heat = _img(_data_uri(picture, "PNG"), f"heatmap of {result.display}")
            note = heatmap.flat_note  # a grey overlay would otherwise read as "nothing found"
    note = "; ".join(n for n in (input_note(result.info), note) if n)  # the CSV's warnings, e.g. a lateral view
    probability = result.probability or 0.0
    bar = f'<span class="bar" style="width:{probability * 80:.0f}px"></span>'
    return (
        f'<tr class="{"flagged" if flagged else "normal"}"><td>{thumb}</td><td class="path">{path}</td>'
        f'<td class="prediction">{html.escape(verdict(result, bundle))}</td>'
        f'<td class="probability">{probability:.3f}{bar}</td><td>{html.escape(note)}</td><td>{heat}</td></tr>'
    )


def model_line(bundle: Bundle) -> str:
    """The model as its card names it (``pneumonia 2.2.0``), then the report's ``model`` id."""
    version = bundle.manifest.get("version")
    named = f"{bundle.name} {version}" if version else bundle.name
    return f"Model {named} ({bundle.short_id}, {bundle.quantization})"


def operating_point(bundle: Bundle) -> str:
    """The threshold; one set with ``--threshold`` says so and gives the model's own, at which
    alone the card's sensitivity and specificity were measured."""
    own = float(bundle.manifest.get("threshold", bundle.threshold))
    text = f"threshold {bundle.threshold:g}"
    return text if own == bundle.threshold else f"{text}, set with --threshold; the model's own is {own:g}"


def _head(out: TextIO, results: Sequence[Result], classifier: Classifier, title: str, heatmaps: bool) -> None:
    bundle = classifier.bundle
    flagged = sum(r.status == OK and r.prediction != bundle.negative_label for r in results)
    errors = sum(r.status == ERROR for r in results)
    rejected = sum(r.status == REJECTED for r in results)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    caveat = f'<p class="meta">{html.escape(HEATMAP_CAVEAT)}</p>\n' if heatmaps else ""
    unreadable = (f"<strong>{errors} unreadable</strong> (not screened: listed after the flagged ones, each must "
                  "be read)") if errors else "0 unreadable"
    if rejected:
        unreadable += (f", <strong>{rejected} rejected</strong> (not screened: the model's gate found they are not "
                       "upright frontal chest films; listed with the unreadable ones, each says why)")
    out.write(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        f'<p class="meta">{len(results)} images: <strong>{flagged} flagged</strong> for review '
        f"({html.escape(bundle.score_name)} &ge; {html.escape(operating_point(bundle))}), "
        f"{unreadable}. "
        f"{html.escape(model_line(bundle))}; "
        f"cxr-edge {__version__}; {html.escape(when)}. "
        "Screening aid only: a clinician reads every image.</p>\n"
        f"{caveat}<table><thead><tr><th>image</th><th>path</th><th>screening</th>"
        f"<th>{html.escape(bundle.score_name)}</th>"
        "<th>note</th><th>heatmap</th></tr></thead><tbody>\n"
    )


def write_html(
    path: str | Path,
    results: Sequence[Result],
    classifier: Classifier,
    explain_flagged: bool = False,
    title: str = "cxr-edge triage report",
    progress: bool = False,
    phi: bool = True,
) -> Path:
    """Write the page for ``results``; heatmaps for flagged images when ``explain_flagged``; each
    DICOM film's patient and study date unless ``phi`` is False (``--no-phi``, as in the CSV)."""
    path = Path(path)
    rows = order(results, classifier.bundle.negative_label)
    with open(path, "w", encoding="utf-8") as out:
        _head(out, rows, classifier, title, heatmaps=explain_flagged)
        bar = tqdm(rows, unit="img", desc="html", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        for result in bar:
            out.write(_row(result, classifier, explain_flagged, phi) + "\n")
        out.write("</tbody></table>\n</body></html>\n")
    return path
