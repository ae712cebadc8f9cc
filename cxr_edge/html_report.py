"""The visual triage report: one self-contained HTML page, most suspicious image first.

The flagged images come first, then those not screened (unreadable, or any status other
than ``ok``: a clinician must read them too, and listed after the normals they would be the
easiest to miss), then the rest.

``classify --html report.html`` writes it next to the CSV, from every row of the report
(a resumed run's page lists the rows of the runs before it too); ``cxr-edge page`` rebuilds
it from any report. The page is written to a temporary file and renamed over the old one
only when whole, so an interrupted run never leaves a page that hides films. Everything is inline (thumbnails
and heatmaps as base64 data URIs, CSS in a ``<style>`` element, no script, no network), so
it opens from a USB stick in any browser on the device with no server. Rows are written one
by one after sorting, so memory holds the small results, never all the pictures.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime
import html
import io
import math
import os
import re
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Sequence, TextIO

import numpy as np
from PIL import Image
from tqdm import tqdm

from cxr_edge import __version__, explain
from cxr_edge.bundle import Bundle
from cxr_edge.dicom import PHI_COLUMNS
from cxr_edge.engine import ERROR, NOT_SCREENED_WORDS, OK, Classifier, Result
from cxr_edge.preprocess import ImageReadError, load_image
from cxr_edge.report import written_whole
from cxr_edge.rows import input_note

THUMBNAIL = 160  # px, longest side
#: Within this distance of the threshold a score is marked "borderline": one int8 output step
#: is 1/256, and a film re-scanned or re-exported can move by a few.
BORDERLINE = 0.05
BAR_WIDTH = 80  # px: a score of 1
#: Decimals of the flagged films' rank scores: as few as tell them apart, from 3 up to this.
MAX_DIGITS = 6
NOT_SCREENED_ID = "not-screened"  # the anchor of the not-screened rows, linked from the header
#: Printed above the table when it has heatmaps: a hot area reads as "the lesion is here" otherwise.
HEATMAP_CAVEAT = (
    "Heatmaps (flagged images only): colour marks where hiding that area lowers the model's score, "
    "scaled to each image's own largest drop. It shows what the model relies on, not where disease is, "
    "and colours cannot be compared between images."
)
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em;overflow-wrap:anywhere}
.meta{color:#555;margin-bottom:1em;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;vertical-align:middle}
th{background:#f3f3f3}
tr.flagged td.prediction{color:#b00020;font-weight:bold}
tr.unscreened td{background:#fff4d6}
tr.unscreened td.prediction{font-weight:bold}
tr.section th{background:#f5d58a;font-size:1.05em}
.reason{cursor:help;text-decoration:underline dotted #8a5a00}
.track{display:inline-block;position:relative;width:80px;height:.7em;background:#eee;margin-left:.5em;vertical-align:middle}
.bar{position:absolute;left:0;top:0;height:100%;background:#888}
tr.flagged .bar{background:#b00020}
.tick{position:absolute;top:-3px;bottom:-3px;width:2px;background:#222}
td.probability{white-space:nowrap}
.borderline{display:block;font-size:.85em;color:#8a5a00;font-weight:bold}
.legend{display:inline-block;width:120px;height:.8em;vertical-align:middle;
  background:linear-gradient(to right,rgb(0,0,4),rgb(87,16,110),rgb(188,55,84),rgb(249,142,9),rgb(252,255,164))}
img{display:block;image-rendering:auto;height:auto;max-width:100%}
td.thumb{width:160px}
.path{font-family:monospace;overflow-wrap:break-word;min-width:16em}
td.note{max-width:22em}
.patient{font-family:system-ui,sans-serif;font-weight:bold}
.nowrap{white-space:nowrap}
@media (max-width:900px){body{margin:.6em}th,td{padding:4px}td.thumb{width:96px}.path{min-width:10em}}
"""


@dataclasses.dataclass
class PageStats:
    """What building the page took, for the summary: heatmap time is not classification time."""

    heatmaps: int = 0
    seconds: float = 0.0


def _data_uri(image: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"quality": 80} if fmt == "JPEG" else {"optimize": True}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def display_size(result: Result, longest: int = THUMBNAIL) -> tuple[int, int]:
    """The film's own proportions at ``longest`` px: the model's input is squashed to a square."""
    return explain.fit(result.width or 1, result.height or 1, longest)


def _img(image: Image.Image, fmt: str, alt: str) -> str:
    return f'<img src="{_data_uri(image, fmt)}" alt="{html.escape(alt)}" width="{image.width}" height="{image.height}">'


def link(result: Result, page_folder: Path) -> str:
    """The film's address relative to the page (pages and films moved together keep working)."""
    target = os.path.relpath(Path(result.path).absolute(), page_folder.absolute())
    return urllib.parse.quote(Path(target).as_posix())


def rank(result: Result) -> tuple[float, float, str]:
    """Most suspicious first: by probability, then by the finer rank score among equal probabilities
    (the 8-bit output ties most flagged films), then by path."""
    return (-(result.probability or 0.0), -(result.score or 0.0), result.display)


def order(results: Sequence[Result], negative_label: str) -> list[Result]:
    """Flagged images by probability, highest first (ties by path), then those not screened,
    then the images not flagged, by probability too."""
    ok = sorted((r for r in results if r.status == OK), key=rank)
    flagged = [r for r in ok if r.prediction != negative_label]
    unscreened = sorted((r for r in results if r.status != OK), key=lambda r: (r.status, r.display))
    return flagged + unscreened + [r for r in ok if r.prediction == negative_label]


def verdict(result: Result, bundle: Bundle) -> str:
    """What a classified row says: flagged for a reader or not, never a diagnosis. A multiclass
    model's label is a weak hint with its own probability, not the screening score."""
    if result.prediction == bundle.negative_label:
        return "not flagged"
    if len(bundle.rule.positive_labels) == 1:
        return "flagged for review"
    p = result.label_probs[bundle.labels.index(result.prediction)]
    return f"flagged for review; weak hint: {result.prediction} (P {p:.2f})"


#: What the page calls an input the model never scored, by its status.
PAGE_WORDS = {ERROR: "unreadable"}


def not_screened(status: str) -> str:
    """The screening cell of an input the model never scored: ``not screened: unreadable``
    (the reason beside it says why)."""
    return f"not screened: {PAGE_WORDS.get(status, status)}"


def screening(result: Result, bundle: Bundle) -> str:
    """What the page's screening column says of a row (the workbook says the same)."""
    return verdict(result, bundle) if result.status == OK else not_screened(result.status)


_MEASURED = re.compile(r"\s*\(upright-film score [^)]*\)")


def plain_reason(error: str) -> str:
    """The reason a film was not screened, in one short clause: what was measured (distances,
    scores and their cut-offs) stays in the CSV and in the cell's tooltip."""
    first = error.removeprefix("not screened: ").split("; ")[0]
    return _MEASURED.sub("", first)


def score_digits(scores: Sequence[float]) -> int:
    """Decimals that tell the flagged films' rank scores apart (3 up to :data:`MAX_DIGITS`): the
    8-bit output gives most of them one probability, and a column of 0.996 orders nothing."""
    distinct = set(scores)
    for digits in range(3, MAX_DIGITS):
        if len({floored(s, digits) for s in distinct}) == len(distinct):
            return digits
    return MAX_DIGITS


def floored(value: float, digits: int) -> str:
    """``value`` cut (not rounded) to ``digits`` decimals: a score of 0.999996 reads 0.99999, never
    a certainty of 1.00000."""
    return f"{math.floor(value * 10**digits) / 10**digits:.{digits}f}"


def whose(result: Result) -> str:
    """The film's patient and study date from its DICOM header as HTML, each kept on one line
    ("" when it has none): with DICOM files named by UID, the path alone tells a reader nothing."""
    named = zip(PHI_COLUMNS, ("patient", "study"))  # the CSV's identifying columns, as the page names them
    return ", ".join(f'<span class="nowrap">{label} {html.escape(result.info[key])}</span>'
                     for key, label in named if result.info.get(key))


def _path_cell(result: Result, phi: bool) -> str:
    """The path, breakable after its separators (``/``, ``_``, ``-``) rather than mid-word,
    then the patient line."""
    path = re.sub(r"([/_-])", r"\1<wbr>", html.escape(result.display))
    patient = whose(result) if phi else ""
    return f'{path}<br><span class="patient">{patient}</span>' if patient else path


def score_cell(probability: float, threshold: float, score: float | None = None, digits: int = 3) -> str:
    """The score, a bar with the threshold ticked on it, and "borderline" near the threshold.
    With ``score`` (a flagged film's rank score) that number is shown, to ``digits`` decimals, and
    the probability that decided goes in the tooltip."""
    tick = f'<span class="tick" style="left:{threshold * BAR_WIDTH:.0f}px"></span>'
    bar = f'<span class="track"><span class="bar" style="width:{probability * BAR_WIDTH:.0f}px"></span>{tick}</span>'
    near = abs(probability - threshold) < BORDERLINE
    shown = f"{probability:.3f}"
    if score is not None:
        tip = (f"probability {probability:.3f} (the model's 8-bit output, compared with the threshold); "
               f"rank score {score:.{MAX_DIGITS}f} (orders films of one probability)")
        shown = f'<span title="{html.escape(tip)}">{floored(score, digits)}</span>'
    return f"{shown}{bar}" + ('<span class="borderline">borderline</span>' if near else "")


class _Page:
    """Rows of one page: the classifier (for thumbnails and heatmaps) and what to show."""

    def __init__(self, classifier: Classifier, folder: Path, explain_flagged: bool, phi: bool, digits: int = 3):
        self.classifier = classifier
        self.folder = folder
        self.explain_flagged = explain_flagged
        self.phi = phi
        self.digits = digits  # of the flagged films' rank scores
        self.stats = PageStats()

    def row(self, result: Result) -> str:
        """One table row; the image is re-read through the contract for its thumbnail."""
        path = _path_cell(result, self.phi)
        if result.status != OK:
            return self._unscreened(result, path)
        bundle = self.classifier.bundle
        flagged = result.prediction != bundle.negative_label
        thumb, heat, note = self._pictures(result, flagged)
        note = "; ".join(n for n in (input_note(result.info), note) if n)  # the CSV's warnings, e.g. a lateral view
        heat_cell = f"<td>{heat}</td>" if self.explain_flagged else ""
        score = score_cell(result.probability or 0.0, bundle.threshold,
                           result.score if flagged else None, self.digits)
        return (
            f'<tr class="{"flagged" if flagged else "normal"}"><td class="thumb">{thumb}</td>'
            f'<td class="path">{path}</td><td class="prediction">{html.escape(verdict(result, bundle))}</td>'
            f'<td class="probability">{score}</td>'
            f'<td class="note">{html.escape(note)}</td>{heat_cell}</tr>'
        )

    def _unscreened(self, result: Result, path: str) -> str:
        """A row the model never scored: its thumbnail where the file can be drawn (else a link to
        it), and one plain reason whose tooltip holds the whole one, measurements included."""
        heat_cell = "<td></td>" if self.explain_flagged else ""
        try:
            thumb = self._thumbnail(result, self._pixels(result))
        except ImageReadError:  # unreadable: the link still opens it where a viewer can
            thumb = f'<a href="{link(result, self.folder)}">open the file</a>'
        reason = (f'<span class="reason" title="{html.escape(result.error)}">'
                  f"{html.escape(plain_reason(result.error))}</span>")
        return (f'<tr class="unscreened {html.escape(result.status)}"><td class="thumb">{thumb}</td>'
                f'<td class="path">{path}</td>'
                f'<td class="prediction">{html.escape(not_screened(result.status))}</td><td></td>'
                f'<td class="note">{reason}</td>{heat_cell}</tr>')

    def _pixels(self, result: Result) -> np.ndarray:
        """The film re-read through the contract (raises :class:`ImageReadError`)."""
        return load_image(result.path, self.classifier.bundle.contract).pixels

    def _thumbnail(self, result: Result, pixels: np.ndarray) -> str:
        """The thumbnail, in the film's own proportions, linked to the film."""
        picture = _img(Image.fromarray(pixels).resize(display_size(result)), "JPEG", result.display)
        return f'<a href="{link(result, self.folder)}">{picture}</a>'

    def _pictures(self, result: Result, flagged: bool) -> tuple[str, str, str]:
        """(thumbnail, heatmap, note) cells' content; the thumbnail links to the film."""
        try:
            pixels = self._pixels(result)
        except ImageReadError as exc:  # changed or removed since it was classified
            return "", "", f"cannot show: {exc}"
        thumb = self._thumbnail(result, pixels)
        size = display_size(result)
        href = link(result, self.folder)
        if not (flagged and self.explain_flagged):
            return thumb, "", ""
        started = time.perf_counter()
        heatmap = explain.occlusion_map(self.classifier, pixels)
        self.stats.heatmaps += 1
        self.stats.seconds += time.perf_counter() - started
        picture = explain.overlay(pixels, heatmap.level).resize(size)
        # a grey overlay would otherwise read as "nothing found"
        return thumb, f'<a href="{href}">{_img(picture, "PNG", f"heatmap of {result.display}")}</a>', heatmap.flat_note


def model_name(bundle: Bundle) -> str:
    """The model as its card names it: ``pneumonia 2.2.0``."""
    version = bundle.manifest.get("version")
    return f"{bundle.name} {version}" if version else bundle.name


def model_line(bundle: Bundle) -> str:
    """The model as its card names it, then the report's ``model`` id."""
    return f"Model {model_name(bundle)} ({bundle.short_id}, {bundle.quantization})"


def operating_point(bundle: Bundle) -> str:
    """The threshold; one set with ``--threshold`` says so and gives the model's own, at which
    alone the card's sensitivity and specificity were measured."""
    own = float(bundle.manifest.get("threshold", bundle.threshold))
    text = f"threshold {bundle.threshold:g}"
    return text if own == bundle.threshold else f"{text}, set with --threshold; the model's own is {own:g}"


def count(n: int, noun: str) -> str:
    """``1 image``, ``2 images``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


@dataclasses.dataclass
class Source:
    """The report a page shows: its path (None for a report sent to stdout) and its row count."""

    report: Path | None
    rows: int
    repeated: int = 0  # films the report holds more than once

    @property
    def title(self) -> str:
        """The page's title names its report, so two pages' tabs and files are told apart."""
        return f"cxr-edge triage: {self.report.name}" if self.report else "cxr-edge triage report"

    def line(self, shown: int) -> str:
        """Which report, where, and how many of its rows the page shows."""
        if self.report is None:
            return f"Report on standard output: {count(shown, 'row')}"
        which = f"Report {self.report.name} in {self.report.absolute().parent}"
        if shown == self.rows:
            return f"{which}: {'all ' if self.rows > 1 else ''}{count(self.rows, 'row')} shown"
        return f"{which}: {shown} of its {count(self.rows, 'row')} shown"


_REPORT_META = re.compile(r'<meta name="cxr-edge-report" content="([^"]*)">')


def _report_meta(source: Source) -> str:
    """The report's absolute path, so that a resumed run knows a page as its report's own."""
    if source.report is None:
        return ""
    return f'<meta name="cxr-edge-report" content="{html.escape(str(source.report.absolute()))}">'


def report_of(head: str) -> Path | None:
    """The report a page's start names (:func:`_report_meta`), or None for any other file."""
    match = _REPORT_META.search(head)
    return Path(html.unescape(match[1])) if match else None


def _head(out: TextIO, results: Sequence[Result], bundle: Bundle, source: Source, heatmaps: bool) -> None:
    flagged = sum(r.status == OK and r.prediction != bundle.negative_label for r in results)
    unscreened = len(results) - sum(r.status == OK for r in results)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    kinds = collections.Counter(NOT_SCREENED_WORDS.get(r.status, r.status) for r in results if r.status != OK)
    detail = ", ".join(f"{n} {html.escape(kind)}" for kind, n in sorted(kinds.items()))
    unscreened_text = (f'<a href="#{NOT_SCREENED_ID}"><strong>{unscreened} not screened</strong></a> ({detail}; '
                       "listed after the flagged ones, each must be read)") if unscreened else "0 not screened"
    title = html.escape(source.title)
    out.write(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{_report_meta(source)}<title>{title}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{title}</h1>\n"
        f'<p class="meta">{html.escape(source.line(len(results)))}: <strong>{flagged} flagged</strong> for review '
        f"({html.escape(bundle.rule.score_name)} &ge; {html.escape(operating_point(bundle))}; "
        f"&ldquo;borderline&rdquo; within {BORDERLINE:g} of it), {unscreened_text}. "
        f"{html.escape(model_line(bundle))}; "
        f"cxr-edge {__version__}; {html.escape(when)}. "
        "Screening aid only: a clinician reads every image.</p>\n"
    )
    if source.repeated:
        out.write(f'<p class="meta"><strong>{html.escape(repeated_text(source.repeated))}</strong></p>\n')
    if heatmaps:
        out.write(f'<p class="meta">{html.escape(HEATMAP_CAVEAT)}<br><span class="nowrap">Colour scale: no drop '
                  f'<span class="legend"></span> largest drop.</span></p>\n')
    heat_header = "<th>heatmap</th>" if heatmaps else ""
    out.write(f"<table><thead><tr><th>image</th><th>path</th><th>screening</th>"
              f"<th>{html.escape(bundle.rule.score_name)}</th><th>note</th>{heat_header}</tr></thead><tbody>\n")


def repeated_text(n: int) -> str:
    """What the page says of a report that holds films twice (a resume of cxr-edge 0.6.0 with
    another spelling of the folder)."""
    films = "1 film appears" if n == 1 else f"{n} films appear"
    return (f"{films} more than once in this report (the same file under two spellings of its folder): "
            "the counts and the table list each row")


def _section(columns: int, unscreened: int) -> str:
    """The heading row of the not-screened films, which the header links to."""
    return (f'<tr class="section" id="{NOT_SCREENED_ID}"><th colspan="{columns}">Not screened: '
            f"{count(unscreened, 'image')} the model did not score; read each one</th></tr>\n")


def write_html(
    path: str | Path,
    results: Sequence[Result],
    classifier: Classifier,
    source: Source,
    explain_flagged: bool = False,
    progress: bool = False,
    phi: bool = True,
) -> PageStats:
    """Write the page for ``results`` (the rows of ``source``) atomically; heatmaps for flagged
    images when ``explain_flagged``; each DICOM film's patient and study date unless ``phi`` is
    False (``--no-phi``, as in the CSV). An interruption leaves the old page, or none."""
    path = Path(path)
    negative = classifier.bundle.negative_label
    rows = order(results, negative)
    digits = score_digits([r.score for r in rows if r.status == OK and r.prediction != negative and r.score is not None])
    page = _Page(classifier, path.parent, explain_flagged, phi, digits)
    unscreened = sum(r.status != OK for r in rows)
    first_unscreened = next((r for r in rows if r.status != OK), None)
    with written_whole(path, "w", encoding="utf-8") as out:
        _head(out, rows, classifier.bundle, source, heatmaps=explain_flagged)
        bar = tqdm(rows, unit="img", desc="html", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        for result in bar:
            if result is first_unscreened:
                out.write(_section(6 if explain_flagged else 5, unscreened))
            out.write(page.row(result) + "\n")
        out.write("</tbody></table>\n</body></html>\n")
    return page.stats
