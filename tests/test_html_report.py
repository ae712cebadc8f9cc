"""``classify --html``: one self-contained page, most suspicious first, rendered by a real browser."""

from __future__ import annotations

import base64
import csv
import html
import html.parser
import io
import re
import shlex
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cxr_edge import explain, html_report
from cxr_edge.bundle import DEFAULT_MODEL, list_bundled, load_bundle
from cxr_edge.discover import Found
from cxr_edge.report import ReportWriter
from cxr_edge.engine import ERROR, OK, Classifier, Result, classify_files
from cxr_edge.html_report import order
from cxr_edge.preprocess import Contract
from cxr_edge.testing.synthetic import synthetic_xray

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


class Page(html.parser.HTMLParser):
    """The parts of the page the tests check: rows (class and cell texts), images, external refs."""

    def __init__(self, text: str):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.links: list[str] = []
        self.sections: list[str] = []  # the ids of the heading rows
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and attrs.get("class") == "section":
            self.sections.append(attrs["id"])
        elif tag == "tr" and attrs.get("class"):
            self.rows.append((attrs["class"], []))
        if tag == "td" and self.rows:
            self.rows[-1][1].append("")
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a":
            self.links.append(attrs["href"])  # a film beside the page, not the network
        elif "src" in attrs and not attrs["src"].startswith("data:") or "href" in attrs:
            self.external.append(attrs.get("src") or attrs["href"])
        if tag in ("script", "link", "iframe"):
            self.external.append(tag)

    def handle_data(self, data):
        if self.rows and self.rows[-1][1]:
            self.rows[-1][1][-1] += data.strip()


def folder_of_images(root: Path) -> Path:
    """Four synthetic radiographs (two with lesions) and one damaged file."""
    root.mkdir()
    for i in range(4):
        synthetic_xray(i, (224, 224), lesion=i % 2 == 1).save(root / f"img{i}.png")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_order_is_flagged_first_then_unreadable_then_the_rest():
    """An unreadable film was never screened: it must not sit below the films the model cleared."""
    results = [
        Result("a", "a.png", OK, prediction="NORMAL", probability=0.2),
        Result("b", "b.png", ERROR, error="damaged"),
        Result("c", "c.png", OK, prediction="PNEUMONIA", probability=0.9),
        Result("d", "d.png", OK, prediction="PNEUMONIA", probability=0.9),
        Result("e", "e.png", OK, prediction="NORMAL", probability=0.4),
    ]
    assert [r.display for r in order(results, "NORMAL")] == ["c.png", "d.png", "b.png", "e.png", "a.png"]


def fake_bundle(**manifest) -> SimpleNamespace:
    return SimpleNamespace(negative_label="NORMAL", rule=SimpleNamespace(positive_labels=("PNEUMONIA",)), threshold=0.5,
                           contract=Contract(width=32, height=32), manifest=manifest)


def test_a_blank_heatmap_of_a_saturated_positive_says_why(tmp_path, monkeypatch):
    synthetic_xray(0, (32, 32), lesion=True).save(tmp_path / "film.png")
    flat = np.zeros((32, 32), np.float32)  # P = 0.99: no occluded square lowers the score
    monkeypatch.setattr(
        explain, "occlusion_map", lambda classifier, pixels: explain.Heatmap(pixels, 0.99, flat, 0.1, 10)
    )
    result = Result(str(tmp_path / "film.png"), "film.png", OK, prediction="PNEUMONIA", probability=0.99,
                    width=32, height=32)
    page = html_report._Page(SimpleNamespace(bundle=fake_bundle()), tmp_path, explain_flagged=True, phi=True)
    assert Page(page.row(result)).rows[0][1][4] == explain.FLAT


def test_a_real_film_at_the_output_ceiling_gets_a_heatmap_that_is_not_blank(tmp_path):
    """26 of 35 flagged films sat at 0.996 (255/256), where the probability cannot drop by a step:
    the map is measured on the head's evidence, which has no ceiling."""
    if DEFAULT_MODEL not in list_bundled():
        pytest.skip("no bundled default model in this checkout yet")
    film = Path(__file__).resolve().parents[1] / "sample_data/films/PNEUMONIA/person434_virus_884.jpeg"
    classifier = Classifier(load_bundle(DEFAULT_MODEL))
    (result,) = classify_files([Found(str(film), film.name)], classifier)
    assert result.probability == 255 / 256  # at the 8-bit output's ceiling
    page = html_report._Page(classifier, tmp_path, explain_flagged=True, phi=True)
    row = Page(page.row(result))
    assert len(row.images) == 2 and row.rows[0][1][4] == "" and page.stats.heatmaps == 1  # thumbnail, heatmap


@pytest.fixture
def report(cli, binary_model, tmp_path, report_rows):
    """classify --html --explain over the folder; returns (page text, CSV rows)."""
    data = folder_of_images(tmp_path / "data")
    page = tmp_path / "report.html"
    result = cli("classify", data, "--model", binary_model, "-o", tmp_path / "r.csv",
                 "--html", page, "--explain", "--threshold", "0.02")  # flags one film below the output's top
    assert result.exit_code == 1  # the damaged file
    return page, report_rows(tmp_path / "r.csv")


def test_page_is_self_contained_sorted_and_complete(report, tmp_path):
    page, rows = report
    parsed = Page(page.read_text(encoding="utf-8"))
    assert parsed.external == []  # no network, no script
    ok_rows = [r for r in rows if r["status"] == "ok"]
    by_probability = sorted(ok_rows, key=lambda r: (-float(r["probability"]), r["path"]))
    flagged_rows = [r for r in by_probability if r["prediction"] == "PNEUMONIA"]
    listed = [*flagged_rows, None, *(r for r in by_probability if r["prediction"] != "PNEUMONIA")]
    shown = [cells for cls, cells in parsed.rows]
    broken_path = f"{(tmp_path / 'data').as_posix()}/broken.jpg"
    assert [cells[1] for cells in shown] == [broken_path if r is None else r["path"] for r in listed]
    classified = [(cells, r) for cells, r in zip(shown, listed) if r is not None]
    assert not any(r["score"] for r in rows)  # this tiny model has no rank score: flagged films show the probability
    assert [cells[3][:5] for cells, _ in classified] == [f"{float(r['probability']):.3f}" for _, r in classified]
    verdicts = {"PNEUMONIA": "flagged for review", "NORMAL": "not flagged"}
    assert [cells[2] for cells, _ in classified] == [verdicts[r["prediction"]] for _, r in classified]
    broken = next(r for r in rows if r["status"] == "error")
    error_row = parsed.rows[len(flagged_rows)]
    assert error_row[0] == "unscreened error" and error_row[1][2] == "not screened: unreadable"
    assert error_row[1][4] == broken["error"] != ""
    assert parsed.sections == ["not-screened"] and "#not-screened" in parsed.links
    assert len(parsed.images) == len(ok_rows) + len(flagged_rows)  # a thumbnail each, a heatmap per flagged image
    assert any(float(r["probability"]) == 255 / 256 for r in flagged_rows)  # the ceiling too
    assert f"threshold {float(rows[0]['threshold']):g}" in page.read_text(encoding="utf-8")
    for uri in parsed.images:
        kind, data = re.match(r"data:image/(jpeg|png);base64,(.+)", uri).groups()
        with Image.open(io.BytesIO(base64.b64decode(data))) as img:
            assert img.size == (160, 160)  # the films are square


def test_a_subtype_is_a_weak_hint_with_its_own_probability_beside_the_screening_score(
    cli, subtype_model, tmp_path, report_rows
):
    """Next to "VIRAL", a bare probability of 0.98 reads as "98% viral"; it is P(not NORMAL)."""
    data = folder_of_images(tmp_path / "data")
    page = tmp_path / "page.html"
    args = ["--model", subtype_model, "-o", tmp_path / "r.csv", "--html", page, "--threshold", "0"]  # flag all
    assert cli("classify", data, *args).exit_code == 1  # broken.jpg
    text = page.read_text(encoding="utf-8")
    assert "<th>P(not NORMAL)</th>" in text and "P(not NORMAL) &ge; threshold 0" in text
    rows = {r["path"]: r for r in report_rows(tmp_path / "r.csv") if r["status"] == "ok"}
    shown = {cells[1]: cells[2] for cls, cells in Page(text).rows if cls == "flagged"}
    assert shown.keys() == rows.keys()
    for path, row in rows.items():
        hint = row["prediction"]
        assert shown[path] == f"flagged for review; weak hint: {hint} (P {float(row[f'p_{hint}']):.2f})"


@pytest.mark.parametrize("threshold, operating_point", [
    ([], "P(PNEUMONIA) ≥ threshold 0.216005; "),
    (["--threshold", "0.5"], "P(PNEUMONIA) ≥ threshold 0.5, set with --threshold; the model's own is 0.216005; "),
])
def test_the_header_names_the_model_version_and_whose_threshold_it_is(
    cli, binary_model, tmp_path, threshold, operating_point
):
    """The card's sensitivity and specificity hold at the model's own threshold only."""
    page = tmp_path / "page.html"
    cli("classify", folder_of_images(tmp_path / "data"), "--model", binary_model, "-o", tmp_path / "r.csv",
        "--html", page, *threshold)
    text = html.unescape(page.read_text(encoding="utf-8"))
    assert "Model tiny_binary_int8 0.0.1 (tiny_binary_int8@" in text
    assert operating_point in text


@pytest.mark.parametrize("explain_option", [[], ["--explain"]])
def test_heatmaps_come_with_what_they_do_not_show(cli, binary_model, tmp_path, explain_option):
    """A hot area would otherwise read as "the pneumonia is here"."""
    page = tmp_path / "page.html"
    cli("classify", folder_of_images(tmp_path / "data"), "--model", binary_model, "-o", tmp_path / "r.csv",
        "--html", page, *explain_option)
    text = html.unescape(page.read_text(encoding="utf-8"))
    caveat = "It shows what the model relies on, not where disease is, and colours cannot be compared between images."
    assert (caveat in text) == bool(explain_option)


def test_explain_needs_html(cli, binary_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    result = cli("classify", data, "--model", binary_model, "-o", tmp_path / "r.csv", "--explain")
    assert result.exit_code == 2 and "--explain needs --html" in result.stderr


def test_a_resumed_run_replaces_its_reports_page_with_one_of_every_row(cli, binary_model, tmp_path, make_image):
    """A resumed run's page listed only the films of that run: 51 of the report's 97 flagged ones."""
    data = folder_of_images(tmp_path / "data")
    report_csv, page = tmp_path / "r.csv", tmp_path / "page.html"
    args = ["--model", binary_model, "-o", report_csv, "--html", page]
    assert cli("classify", data, *args).exit_code == 1
    make_image(data / "later.png", size=(120, 90))
    result = cli("classify", data, *args, "--resume")
    assert result.exit_code == 1, result.stderr
    assert len(Page(page.read_text(encoding="utf-8")).rows) == 6  # four films, broken.jpg and the new film
    assert ": all 6 rows shown: " in page.read_text(encoding="utf-8")


def test_a_resumed_run_never_writes_its_page_over_another_reports_page(cli, binary_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    page = tmp_path / "page.html"
    assert cli("classify", data, "--model", binary_model, "-o", tmp_path / "a.csv", "--html", page).exit_code == 1
    assert cli("classify", data, "--model", binary_model, "-o", tmp_path / "b.csv").exit_code == 1
    before = page.read_bytes()
    result = cli("classify", data, "--model", binary_model, "-o", tmp_path / "b.csv", "--resume", "--html", page)
    assert result.exit_code == 2 and "was not made from" in result.stderr
    assert page.read_bytes() == before


def test_a_page_over_its_report_is_refused(cli, binary_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    report_csv = tmp_path / "r.csv"
    assert cli("classify", data, "--model", binary_model, "-o", report_csv).exit_code == 1
    before = report_csv.read_bytes()
    result = cli("classify", data, "--model", binary_model, "-o", report_csv, "--resume", "--html", report_csv)
    assert result.exit_code == 2 and "is the CSV report itself" in result.stderr
    assert report_csv.read_bytes() == before


def test_a_page_in_a_missing_folder_is_refused_before_any_work(cli, binary_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    page = tmp_path / "missing" / "page.html"
    result = cli("classify", data, "--model", binary_model, "-o", tmp_path / "r.csv", "--html", page)
    assert result.exit_code == 2 and f"folder {page.parent} does not exist" in result.stderr
    assert not (tmp_path / "r.csv").exists()


def test_an_existing_page_is_replaced_only_with_overwrite(cli, binary_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    page = tmp_path / "page.html"
    page.write_text("yesterday's page")
    args = ["classify", data, "--model", binary_model, "--html", page]
    result = cli(*args, "-o", tmp_path / "a.csv")
    assert result.exit_code == 2 and "use --overwrite" in result.stderr
    assert page.read_text() == "yesterday's page" and not (tmp_path / "a.csv").exists()
    assert cli(*args, "-o", tmp_path / "b.csv", "--overwrite").exit_code == 1  # broken.jpg
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
def test_headless_chromium_renders_the_page(report, tmp_path):
    page, rows = report
    with tempfile.TemporaryDirectory() as profile:
        common = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        shot = tmp_path / "shot.png"
        subprocess.run([*common, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
                       capture_output=True, timeout=120, check=True)
        dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    with Image.open(shot) as img:
        pixels = np.asarray(img.convert("L"))
    assert pixels.shape == (1400, 1000)
    assert pixels.std() > 20  # thumbnails and text drawn, not a blank page
    parsed = Page(dom)
    assert len(parsed.rows) == len(rows)
    images_in_dom = re.findall(r'<img src="data:image/', dom)
    assert len(images_in_dom) == len(parsed.images) > 0
    assert "<title>cxr-edge triage: r.csv</title>" in dom


def interrupt_on_call(n: int):
    """A stand-in that raises Ctrl-C on its n-th call and does what the original did before."""

    def install(monkeypatch, owner, name):
        original, calls = getattr(owner, name), []

        def wrapped(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapped)

    return install


def test_ctrl_c_while_classifying_says_how_many_rows_are_kept_and_the_exact_command_to_go_on(
    cli, binary_model, tmp_path, monkeypatch
):
    data = folder_of_images(tmp_path / "data")
    report_csv, page = tmp_path / "r.csv", tmp_path / "page.html"
    interrupt_on_call(3)(monkeypatch, ReportWriter, "write")
    result = cli("classify", data, "--model", binary_model, "-o", report_csv, "--html", page, "--explain")
    assert result.exit_code == 130
    assert f"{report_csv} keeps 2 rows; continue with:" in result.stderr
    command = shlex.split(result.stderr.splitlines()[-1])
    assert command[:2] == ["cxr-edge", "classify"] and "--resume" in command and "--explain" in command
    monkeypatch.undo()
    assert cli(*command[1:]).exit_code == 1  # broken.jpg
    assert len(Page(page.read_text(encoding="utf-8")).rows) == 5  # the rows of both runs


def test_ctrl_c_while_drawing_heatmaps_leaves_the_old_page_whole_and_says_the_report_is_complete(
    cli, binary_model, tmp_path, monkeypatch
):
    """A cut-off page said "200 images: 97 flagged" over 11 rows."""
    data = folder_of_images(tmp_path / "data")
    report_csv, page = tmp_path / "r.csv", tmp_path / "page.html"
    page.write_text("yesterday's page")
    args = ["--model", binary_model, "-o", report_csv, "--html", page, "--threshold", "0.02", "--explain"]
    interrupt_on_call(1)(monkeypatch, explain, "occlusion_map")
    result = cli("classify", data, *args, "--overwrite")
    assert result.exit_code == 130
    assert f"the report ({report_csv}, 5 rows) is complete; the page {page} was not written" in result.stderr
    assert page.read_text() == "yesterday's page" and [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    command = shlex.split(result.stderr.splitlines()[-1])
    assert command[:2] == ["cxr-edge", "page"]
    monkeypatch.undo()
    result = cli(*command[1:], "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert len(Page(page.read_text(encoding="utf-8")).rows) == 5


def test_the_page_command_rebuilds_the_page_of_a_report_a_spreadsheet_resaved(cli, binary_model, tmp_path, report_rows):
    """Every field quoted, a byte-order mark: what LibreOffice and Excel write back."""
    data = folder_of_images(tmp_path / "data")
    report_csv = tmp_path / "clinic day 1.csv"
    assert cli("classify", data, "--model", binary_model, "-o", report_csv).exit_code == 1
    rows = report_rows(report_csv)
    with open(report_csv, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
        writer.writeheader()
        writer.writerows(rows)
    page = tmp_path / "page.html"
    result = cli("page", report_csv, "--html", page, "--model", binary_model)
    assert result.exit_code == 0, result.stderr
    text = html.unescape(page.read_text(encoding="utf-8"))
    assert "<title>cxr-edge triage: clinic day 1.csv</title>" in text
    assert f"Report clinic day 1.csv in {tmp_path}: all 5 rows shown: <strong>2 flagged</strong>" in text
    assert sorted(cells[1] for _, cells in Page(text).rows) == sorted(r["path"] for r in rows)
    assert f"page: {page}" in result.stderr


def test_the_page_command_refuses_a_report_of_another_model(cli, binary_model, float_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    assert cli("classify", data, "--model", binary_model, "-o", tmp_path / "r.csv").exit_code == 1
    result = cli("page", tmp_path / "r.csv", "--html", tmp_path / "p.html", "--model", float_model)
    assert result.exit_code == 3 and "was written by model tiny_binary_int8@" in result.stderr
    assert not (tmp_path / "p.html").exists()


def test_after_a_resume_the_summary_gives_the_whole_report_and_where_it_went(cli, binary_model, tmp_path, make_image):
    data = folder_of_images(tmp_path / "data")
    report_csv, page = tmp_path / "r.csv", tmp_path / "page.html"
    assert cli("classify", data, "--model", binary_model, "-o", report_csv).exit_code == 1
    make_image(data / "later.png")
    result = cli("classify", data, "--model", binary_model, "-o", report_csv, "--resume", "--html", page)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("1 classified (") and "1 unreadable: not a readable image" in lines[0]
    assert "4 already in the report" in lines[0]
    assert lines[1].startswith("whole report: 5 classified (") and "; 1 unreadable: " in lines[1]
    assert lines[-1] == f"report: {report_csv}; page: {page}"


@pytest.mark.parametrize("rows, shown, line", [
    (1, 1, "Report r.csv in /clinic: 1 row shown"),
    (200, 200, "Report r.csv in /clinic: all 200 rows shown"),
    (200, 150, "Report r.csv in /clinic: 150 of its 200 rows shown"),
])
def test_the_header_says_which_report_and_how_many_of_its_rows_the_page_shows(rows, shown, line):
    assert html_report.Source(Path("/clinic/r.csv"), rows).line(shown) == line


def test_thumbnails_keep_the_films_proportions_and_link_to_the_file(cli, binary_model, tmp_path, make_image):
    """A squashed square thumbnail makes a heart look too big or too small."""
    data = tmp_path / "films"
    make_image(data / "wide film.png", size=(300, 200))
    make_image(data / "tall.png", size=(100, 200))
    page = tmp_path / "out" / "page.html"
    page.parent.mkdir()
    assert cli("classify", data, "--model", binary_model, "-o", tmp_path / "r.csv", "--html", page).exit_code == 0
    parsed = Page(page.read_text(encoding="utf-8"))
    sizes = sorted(Image.open(io.BytesIO(base64.b64decode(uri.split(",")[1]))).size for uri in parsed.images)
    assert sizes == [(80, 160), (160, 107)]
    assert sorted(parsed.links) == ["../films/tall.png", "../films/wide%20film.png"]
    assert all((page.parent / urllib.parse.unquote(href)).is_file() for href in parsed.links)


def test_without_explain_there_is_no_heatmap_column(cli, binary_model, tmp_path):
    page = tmp_path / "page.html"
    cli("classify", folder_of_images(tmp_path / "data"), "--model", binary_model, "-o", tmp_path / "r.csv",
        "--html", page)
    text = page.read_text(encoding="utf-8")
    assert "<th>heatmap</th>" not in text
    assert {len(cells) for _, cells in Page(text).rows} == {5}


@pytest.mark.parametrize("probability, flagged, borderline", [(0.52, True, True), (0.48, False, True),
                                                               (0.9, True, False), (0.1, False, False)])
def test_a_score_near_the_threshold_is_marked_borderline_and_the_threshold_ticked(probability, flagged, borderline):
    cell = html_report.score_cell(probability, 0.5)
    assert ("borderline" in cell) == borderline
    assert '<span class="tick" style="left:40px">' in cell  # the threshold on the 80 px bar


def test_only_flagged_bars_use_the_alarm_colour():
    css = html_report._CSS
    assert ".bar{position:absolute;left:0;top:0;height:100%;background:#888}" in css
    assert "tr.flagged .bar{background:#b00020}" in css


def test_the_page_command_says_what_a_spreadsheet_changed_in_the_threshold(cli, binary_model, tmp_path):
    data = folder_of_images(tmp_path / "data")
    report_csv = tmp_path / "r.csv"
    assert cli("classify", data, "--model", binary_model, "-o", report_csv).exit_code == 1
    german = re.sub(r",0\.(216\d*),", r',"0,\1",', report_csv.read_text(encoding="utf-8"))
    report_csv.write_text(german, encoding="utf-8")
    result = cli("page", report_csv, "--html", tmp_path / "p.html", "--model", binary_model)
    assert result.exit_code == 3 and "is not a number written with a decimal point" in result.stderr


def test_flagged_films_show_the_rank_score_with_the_digits_that_tell_them_apart():
    """The 8-bit output gives most flagged films 0.996: the rank score orders them, and the page shows it."""
    assert html_report.score_digits([0.99612, 0.99641, 0.99873]) == 4
    assert html_report.score_digits([0.9961201, 0.9961203]) == html_report.MAX_DIGITS
    assert html_report.score_digits([0.8, 0.9]) == 3
    assert html_report.floored(0.999996, 5) == "0.99999"  # cut, not rounded: never a certainty of 1.00000
    assert html_report.score_digits([0.999996, 0.999991]) == html_report.MAX_DIGITS
    cell = html_report.score_cell(0.99609375, 0.66, score=0.99641234, digits=4)
    assert re.match(r'<span title="probability 0.996 [^"]*rank score 0.996412[^"]*">0.9964</span>', cell)
    assert html_report.score_cell(0.3, 0.66).startswith("0.300<span class=\"track\">")


def test_a_not_screened_row_gives_one_short_reason_and_keeps_the_measurements_in_its_tooltip():
    from cxr_edge.gate import NOT_A_CHEST_FILM

    far = (f"not screened: {NOT_A_CHEST_FILM}; its features lie at distance 1330 from the training films' "
           "(cut-off 311); check that the file is a frontal (PA/AP) chest X-ray")
    turned = ("not screened: the film looks turned 90 degrees: rotate it upright and scan or export it again "
              "(upright-film score 0.12, cut-off 0.50)")
    assert html_report.plain_reason(far) == NOT_A_CHEST_FILM
    assert html_report.plain_reason(turned) == "the film looks turned 90 degrees: rotate it upright and scan or export it again"
    assert html_report.plain_reason("not a readable image") == "not a readable image"


def test_not_screened_films_have_a_heading_linked_from_the_header_a_thumbnail_and_a_link(cli, binary_model,
                                                                                     tmp_path, make_image):
    data = folder_of_images(tmp_path / "data")
    page = tmp_path / "page.html"
    cli("classify", data, "--model", binary_model, "-o", tmp_path / "r.csv", "--html", page)
    text = page.read_text(encoding="utf-8")
    parsed = Page(text)
    assert '<a href="#not-screened"><strong>1 not screened</strong></a>' in text
    assert parsed.sections == ["not-screened"]
    [(cls, cells)] = [row for row in parsed.rows if row[0].startswith("unscreened")]
    assert cells[0] == "open the file"  # unreadable: no thumbnail, but the file is a click away
    assert "data/broken.jpg" in parsed.links


def test_a_rejected_film_gets_its_thumbnail_and_a_plain_reason_with_the_measurements_in_a_tooltip(
        tmp_path, binary_model, monkeypatch):
    from cxr_edge.classify import open_classifier
    from cxr_edge.gate import NOT_A_CHEST_FILM

    film = tmp_path / "hand.png"
    synthetic_xray(0, (200, 100)).save(film)
    why = f"not screened: {NOT_A_CHEST_FILM}; its features lie at distance 908 from the training films' (cut-off 311)"
    rejected = Result(str(film), "hand.png", "rejected", error=why, width=200, height=100)
    page = tmp_path / "page.html"
    html_report.write_html(page, [rejected], open_classifier(binary_model, 1), html_report.Source(None, 1))
    parsed = Page(page.read_text(encoding="utf-8"))
    [(cls, cells)] = parsed.rows
    assert cells[2] == "not screened: rejected" and cells[4] == NOT_A_CHEST_FILM
    assert len(parsed.images) == 1 and parsed.links == ["#not-screened", "hand.png"]
    assert f'title="{html.escape(why)}"' in page.read_text(encoding="utf-8")


def _table(page: Path) -> str:
    """The page from its table on: the rows, without the header's time."""
    text = page.read_text(encoding="utf-8")
    return text[text.index("<table>"):]


def test_classify_makes_its_page_the_one_way_the_page_command_does(cli, binary_model, tmp_path, monkeypatch):
    """One way to a page: from the report's rows, read back (or, on stdout, kept as they were written)."""
    data = folder_of_images(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    cli("classify", "data", "--model", binary_model, "-o", "r.csv", "--html", "classify.html")
    assert cli("page", "r.csv", "--html", "page.html", "--model", binary_model).exit_code == 0
    strip_time = lambda page: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d \w+", "", page.read_text(encoding="utf-8"))
    assert strip_time(tmp_path / "classify.html") == strip_time(tmp_path / "page.html")
    piped = cli("classify", "data", "--model", binary_model, "-o", "-", "--html", "stdout.html")
    (tmp_path / "piped.csv").write_text(piped.stdout, encoding="utf-8", newline="")
    assert cli("page", "piped.csv", "--html", "piped.html", "--model", binary_model).exit_code == 0
    assert _table(tmp_path / "stdout.html") == _table(tmp_path / "piped.html") == _table(tmp_path / "page.html")
    assert data.exists()
