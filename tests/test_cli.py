"""``cxr-edge`` end to end: real files, real TFLite models, the report on disk, exit codes."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_edge import __version__, bundle
from cxr_edge.dicom import PHI_COLUMNS
from cxr_edge.report import ReportWriter

pd = pytest.importorskip("pandas")

REPO = Path(__file__).resolve().parents[1]


def cxr_edge(*args: object, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cxr_edge", *map(str, args)], capture_output=True, text=True, cwd=REPO, **kwargs
    )


@pytest.fixture
def folder(tmp_path: Path, make_image) -> Path:
    """Five good images, one of them in a sub-folder."""
    root = tmp_path / "scans"
    for i in range(4):
        make_image(root / f"img_{i}.png", seed=i)
    make_image(root / "sub" / "deep.jpg", seed=9)
    return root


def under(folder: Path, *names: str) -> list[str]:
    """The report's ``path`` cells: the folder as given on the command line, then the file below it."""
    return [f"{folder.as_posix()}/{name}" for name in names]


def test_classify_writes_one_ok_row_per_image_and_a_summary(cli, folder, binary_model, report_rows) -> None:
    out = folder.parent / "report.csv"
    result = cli("classify", folder, "--out", out, "--model", binary_model)
    assert result.exit_code == 0, result.stderr
    rows = report_rows(out)
    assert [r["path"] for r in rows] == under(folder, "img_0.png", "img_1.png", "img_2.png", "img_3.png", "sub/deep.jpg")
    model = bundle.load_bundle(binary_model)
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        assert row["prediction"] in model.labels
        assert 0.0 <= float(row["probability"]) <= 1.0
        assert float(row["threshold"]) == pytest.approx(model.threshold)
        assert row["model"] == model.short_id
        assert (row["width"], row["height"]) == ("96", "80")
        assert (float(row["probability"]) >= model.threshold) == (row["prediction"] != model.negative_label)
    assert "5 classified" in result.stderr and "0 unreadable" in result.stderr and "images/s" in result.stderr
    assert result.stderr.splitlines()[-1] == f"report: {out}"
    assert result.stdout == ""


def test_bad_inputs_get_error_rows_and_exit_code_1(cli, folder, binary_model, bad_inputs, report_rows) -> None:
    expected = bad_inputs(folder / "bad")
    out = folder.parent / "report.csv"
    result = cli("classify", folder, "--out", out, "--model", binary_model)
    assert result.exit_code == 1
    rows = {r["path"]: r for r in report_rows(out)}
    assert len(rows) == 5 + len(expected)
    for name, message in expected.items():
        [row] = (rows[path] for path in under(folder, f"bad/{name}"))
        assert row["status"] == "error" and row["prediction"] == "" and row["probability"] == ""
        assert re.search(message, row["error"]), row["error"]
    assert f"{len(expected)} unreadable: " in result.stderr
    assert "Traceback" not in result.stderr


NASTY_NAMES = ["comma, here.png", 'quote "q".png', "new\nline.png", "ünïcødé 肺.png", "semi;colon 'single'.png"]


def test_awkward_file_names_round_trip_through_csv_and_pandas(cli, tmp_path, make_image, binary_model) -> None:
    for i, name in enumerate(NASTY_NAMES):
        make_image(tmp_path / "in" / name, seed=i)
    out = tmp_path / "report.csv"
    assert cli("classify", tmp_path / "in", "--out", out, "--model", binary_model).exit_code == 0
    with open(out, newline="", encoding="utf-8") as fh:
        assert sorted(r["path"] for r in csv.DictReader(fh)) == sorted(under(tmp_path / "in", *NASTY_NAMES))
    frame = pd.read_csv(out, encoding="utf-8", keep_default_na=False)
    assert sorted(frame["path"]) == sorted(under(tmp_path / "in", *NASTY_NAMES))
    assert set(frame["status"]) == {"ok"}


@pytest.mark.parametrize("name", ["=cmd.png", "+1.png", "-2.png", "@SUM.png"])
def test_file_names_that_look_like_formulas_are_neutralised(cli, tmp_path, make_image, binary_model, name,
                                                          monkeypatch) -> None:
    make_image(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.csv"
    assert cli("classify", "--out", out, "--model", binary_model, "--", name).exit_code == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame["path"]) == ["'" + name]


def test_out_dash_writes_the_csv_to_stdout_and_the_summary_to_stderr(cli, folder, binary_model) -> None:
    result = cli("classify", folder, "--out", "-", "--model", binary_model)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout, newline="")))
    assert len(rows) == 5 and "classified" in result.stderr and "classified" not in result.stdout


def test_an_existing_report_is_refused_without_overwrite_or_resume(cli, folder, binary_model, report_rows) -> None:
    out = folder.parent / "report.csv"
    out.write_bytes(b"precious\r\n")
    result = cli("classify", folder, "--out", out, "--model", binary_model)
    assert result.exit_code == 2 and "--resume" in result.stderr and "--overwrite" in result.stderr
    assert out.read_bytes() == b"precious\r\n"
    assert cli("classify", folder, "--out", out, "--model", binary_model, "--overwrite").exit_code == 0
    assert len(report_rows(out)) == 5
    assert cli("classify", folder, "--out", out, "--overwrite", "--resume").exit_code == 2


def test_resume_after_a_crash_mid_row_reports_every_image_once(cli, folder, binary_model, report_rows) -> None:
    out = folder.parent / "report.csv"
    (folder / "later.png").write_text("not yet an image")
    assert cli("classify", folder, "--out", out, "--model", binary_model).exit_code == 1
    data = out.read_bytes()
    out.write_bytes(data[: data.rindex(b"img_3.png") + 5])  # the crash: rows after img_2, plus half a row
    Image.fromarray(np.full((50, 60), 128, np.uint8)).save(folder / "later.png", format="PNG")  # fixed since
    result = cli("classify", folder, "--out", out, "--model", binary_model, "--resume")
    assert result.exit_code == 0, result.stderr
    rows = report_rows(out)
    assert sorted(r["path"] for r in rows) == under(
        folder, "img_0.png", "img_1.png", "img_2.png", "img_3.png", "later.png", "sub/deep.jpg"
    )
    assert {r["status"] for r in rows} == {"ok"}
    assert "already in the report" in result.stderr


def test_resume_with_another_folder_classifies_its_files_of_the_same_name(cli, tmp_path, make_image, binary_model,
                                                                         report_rows, monkeypatch) -> None:
    make_image(tmp_path / "day1" / "IM-0001.jpeg", seed=1)
    make_image(tmp_path / "day2" / "IM-0001.jpeg", seed=2)
    monkeypatch.chdir(tmp_path)
    assert cli("classify", "day1", "--out", "d.csv", "--model", binary_model).exit_code == 0
    result = cli("classify", "day2", "--out", "d.csv", "--model", binary_model, "--resume")
    assert result.exit_code == 0 and "1 classified" in result.stderr
    assert [r["path"] for r in report_rows(tmp_path / "d.csv")] == ["day1/IM-0001.jpeg", "day2/IM-0001.jpeg"]


@pytest.mark.parametrize("flag", ["--resume", "--overwrite"])
def test_resume_and_overwrite_need_a_report_file_not_stdout(cli, folder, binary_model, flag) -> None:
    result = cli("classify", folder, "--out", "-", "--model", binary_model, flag)
    assert result.exit_code == 2 and "need a report file" in result.stderr


def test_resume_with_another_model_is_refused_and_keeps_the_results(cli, folder, binary_model, float_model) -> None:
    out = folder.parent / "report.csv"
    assert cli("classify", folder, "--out", out, "--model", binary_model).exit_code == 0
    before = out.read_bytes()
    result = cli("classify", folder, "--out", out, "--model", float_model, "--resume")
    assert result.exit_code == 2 and bundle.load_bundle(binary_model).short_id in result.stderr
    assert out.read_bytes() == before


def test_threshold_option_flags_at_that_probability_and_every_row_records_it(cli, folder, binary_model,
                                                                             report_rows) -> None:
    for threshold, flagged in (("0", 5), ("1", 0)):
        out = folder.parent / f"at-{threshold}.csv"
        assert cli("classify", folder, "--out", out, "--model", binary_model, "--threshold", threshold).exit_code == 0
        rows = report_rows(out)
        assert {r["threshold"] for r in rows} == {threshold}
        assert sum(r["prediction"] == "PNEUMONIA" for r in rows) == flagged, [r["probability"] for r in rows]


@pytest.mark.parametrize("nan", ["nan", "NaN", "-nan"])
def test_a_nan_threshold_is_a_usage_error_and_writes_nothing(cli, folder, binary_model, nan) -> None:
    out = folder.parent / "report.csv"
    result = cli("classify", folder, "--out", out, "--model", binary_model, "--threshold", nan)
    assert result.exit_code == 2 and "--threshold" in result.stderr and "not a number" in result.stderr
    assert not out.exists()


def test_resume_at_another_threshold_is_refused_and_keeps_the_results(cli, folder, binary_model) -> None:
    out = folder.parent / "report.csv"
    assert cli("classify", folder, "--out", out, "--model", binary_model, "--threshold", "0.25").exit_code == 0
    before = out.read_bytes()
    result = cli("classify", folder, "--out", out, "--model", binary_model, "--resume")
    assert result.exit_code == 2 and "threshold 0.25" in result.stderr and "--threshold" in result.stderr
    assert out.read_bytes() == before
    again = cli("classify", folder, "--out", out, "--model", binary_model, "--resume", "--threshold", "0.25")
    assert again.exit_code == 0 and "already in the report" in again.stderr and out.read_bytes() == before


def test_kill_9_mid_run_then_resume_reports_every_image_exactly_once(tmp_path, binary_model, report_rows) -> None:
    """A real crash: SIGKILL the CLI while it writes, then --resume."""
    folder = tmp_path / "many"
    folder.mkdir()
    big = tmp_path / "big.png"  # slow to decode, so the run is still going when it is killed
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1500, 2000), dtype=np.uint8)).save(big, compress_level=1)
    count = 150
    for i in range(count):
        os.link(big, folder / f"img_{i:04d}.png")
    out = tmp_path / "report.csv"
    args = [sys.executable, "-m", "cxr_edge", "classify", folder, "--out", out, "--model", binary_model,
            "--workers", "1", "--threads", "1", "--quiet"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.read_bytes().count(b"\r\n") < 12):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = out.read_bytes().count(b"\r\n") - 1
    assert 10 <= written < count, "the run should have been killed part-way"
    resumed = subprocess.run([*args[:-1], "--resume"], cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    paths = [r["path"] for r in report_rows(out)]
    assert sorted(paths) == under(folder, *(f"img_{i:04d}.png" for i in range(count)))  # each exactly once


def test_a_second_process_on_the_same_report_is_refused(cli, folder, binary_model) -> None:
    out = folder.parent / "report.csv"
    with ReportWriter(out, ["path"], "someone-else"):
        result = cli("classify", folder, "--out", out, "--model", binary_model, "--resume")
    assert result.exit_code == 3 and "another cxr-edge process" in result.stderr


def test_the_edge_tool_never_imports_tensorflow(folder, binary_model) -> None:
    out = folder.parent / "report.csv"
    code = (
        "import sys\n"
        "from cxr_edge.cli import main\n"
        f"try:\n    main(['classify', {str(folder)!r}, '--out', {str(out)!r}, '--model', {str(binary_model)!r}])\n"
        "except SystemExit as done:\n    assert done.code == 0, done.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'pandas', 'sklearn', 'matplotlib'))\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert out.exists()


def test_the_default_model_is_the_bundled_pneumonia_one(cli, folder, binary_model, copy_bundle, monkeypatch,
                                                        report_rows) -> None:
    models = folder.parent / "models"
    copy = copy_bundle(binary_model, models)
    manifest = json.loads(copy.read_text())
    (models / "pneumonia.json").write_text(json.dumps({**manifest, "name": "pneumonia"}))
    copy.unlink()
    monkeypatch.setattr(bundle, "bundled_models_dir", lambda: models)
    monkeypatch.chdir(folder.parent)
    (folder.parent / "pneumonia").mkdir()  # a folder of films named like the model does not shadow it
    out = folder.parent / "report.csv"
    assert cli("classify", folder, "--out", out).exit_code == 0
    assert report_rows(out)[0]["model"].startswith("pneumonia@")


def test_without_a_bundled_model_the_message_says_what_to_do(cli, folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bundle, "bundled_models_dir", lambda: tmp_path / "no-models")
    result = cli("classify", folder, "--out", tmp_path / "r.csv")
    assert result.exit_code == 3
    assert "no bundled 'pneumonia' model" in result.stderr and "--model" in result.stderr


def test_a_damaged_or_missing_model_is_fatal_and_named(cli, folder, binary_model, copy_bundle, tmp_path) -> None:
    copy = copy_bundle(binary_model, tmp_path / "m")
    tflite = copy.with_suffix(".tflite")
    tflite.write_bytes(tflite.read_bytes()[:-10] + b"0123456789")
    result = cli("classify", folder, "--out", tmp_path / "r.csv", "--model", copy)
    assert result.exit_code == 3 and str(tflite) in result.stderr and "sha256" in result.stderr
    assert not (tmp_path / "r.csv").exists()
    result = cli("classify", folder, "--out", tmp_path / "r.csv", "--model", tmp_path / "nothing.json")
    assert result.exit_code == 3 and "nothing.json" in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_out_that_is_not_a_regular_file_is_a_usage_error(cli, folder, binary_model, tmp_path, kind) -> None:
    out = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(out)
    else:
        out.mkdir()
    result = cli("classify", folder, "--out", out, "--model", binary_model, "--resume")
    assert result.exit_code == 2 and str(out) in result.stderr and "Traceback" not in result.stderr
    assert ("is a folder" if kind == "folder" else "--out - for stdout") in result.stderr


def test_a_report_in_a_missing_folder_is_a_usage_error_that_says_how_to_fix_it(cli, folder, binary_model,
                                                                                tmp_path) -> None:
    """Exit 2 as for an --html in a missing folder: the path given is wrong, nothing failed."""
    missing = tmp_path / "missing"
    result = cli("classify", folder, "--out", missing / "r.csv", "--model", binary_model)
    assert result.exit_code == 2 and "No such file" not in result.stderr
    assert f"the folder {missing} does not exist; create it (mkdir -p {missing})" in result.stderr
    assert not missing.exists()


def test_no_phi_leaves_the_patient_columns_out(cli, folder, binary_model, report_rows) -> None:
    out = folder.parent / "report.csv"
    assert cli("classify", folder, "--out", out, "--model", binary_model, "--no-phi").exit_code == 0
    header = set(report_rows(out)[0])
    assert not header & set(PHI_COLUMNS) and {"modality", "note"} <= header


def test_multiclass_models_add_one_probability_column_per_label(cli, folder, subtype_model, report_rows) -> None:
    out = folder.parent / "report.csv"
    assert cli("classify", folder, "--out", out, "--model", subtype_model).exit_code == 0
    labels = bundle.load_bundle(subtype_model).labels
    for row in report_rows(out):
        probs = [float(row[f"p_{label}"]) for label in labels]
        assert sum(probs) == pytest.approx(1.0, abs=0.02)
        assert float(row["probability"]) == pytest.approx(1.0 - probs[0], abs=1e-5)


def test_no_recursive_and_several_paths(cli, folder, binary_model, report_rows, monkeypatch) -> None:
    monkeypatch.chdir(folder.parent)
    out = folder.parent / "report.csv"
    assert cli("classify", "scans", "scans/sub/deep.jpg", "--out", out, "--model", binary_model,
               "--no-recursive").exit_code == 0
    assert [r["path"] for r in report_rows(out)] == [f"scans/img_{i}.png" for i in range(4)] + ["scans/sub/deep.jpg"]


def test_edgetpu_without_the_runtime_is_fatal_with_an_install_hint(
    cli, folder, binary_model, tmp_path, copy_bundle
) -> None:
    manifest_path = copy_bundle(binary_model, tmp_path / "m")
    compiled = manifest_path.with_name("compiled_edgetpu.tflite")
    compiled.write_bytes(manifest_path.with_suffix(".tflite").read_bytes())
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "edgetpu_model_file": compiled.name}))
    result = cli("classify", folder, "--out", tmp_path / "r.csv", "--model", manifest_path, "--device", "edgetpu")
    assert result.exit_code == 3 and "libedgetpu1-std" in result.stderr and "Traceback" not in result.stderr


def test_edgetpu_with_a_bundle_not_compiled_for_it_is_fatal_with_how_to_compile(
    cli, folder, binary_model, tmp_path
) -> None:
    result = cli("classify", folder, "--out", tmp_path / "r.csv", "--model", binary_model, "--device", "edgetpu")
    assert result.exit_code == 3 and "edgetpu_compiler" in result.stderr and "install" not in result.stderr
    assert not (tmp_path / "r.csv").exists()


def test_unreadable_file_gets_an_error_row(folder, binary_model, tmp_path, report_rows) -> None:
    """Permissions. Root reads anything, so as root the CLI runs without the capabilities that allow it."""
    locked = folder / "locked.png"
    locked.write_bytes((folder / "img_0.png").read_bytes())
    locked.chmod(0)
    out = tmp_path / "r.csv"
    command = [sys.executable, "-m", "cxr_edge", "classify", folder, "--out", out, "--model", binary_model]
    if os.geteuid() == 0:
        drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
        if shutil.which("setpriv") is None or subprocess.run([*drop, "true"]).returncode != 0:
            pytest.skip("running as root and cannot drop CAP_DAC_OVERRIDE (util-linux setpriv)")
        command = [*drop, *command]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1, result.stderr
    rows = {r["path"]: r for r in report_rows(out)}
    [locked_row] = (rows[path] for path in under(folder, "locked.png"))
    assert locked_row["status"] == "error" and "permission denied" in locked_row["error"]
    assert sum(r["status"] == "ok" for r in rows.values()) == 5


def test_a_folder_that_cannot_be_listed_gets_an_error_row_and_exit_code_1(cli, folder, binary_model, report_rows,
                                                                          unlistable) -> None:
    unlistable(folder / "sub")
    out = folder.parent / "report.csv"
    result = cli("classify", folder, "--out", out, "--model", binary_model)
    assert result.exit_code == 1 and "1 unreadable: cannot list this folder: Permission denied (1)" in result.stderr
    rows = {r["path"]: r for r in report_rows(out)}
    [locked] = (rows[path] for path in under(folder, "sub/"))
    assert locked["status"] == "error" and locked["error"] == "cannot list this folder: Permission denied"
    assert sum(r["status"] == "ok" for r in rows.values()) == 4


def test_progress_bar_only_on_a_terminal(folder, binary_model, tmp_path) -> None:
    """Not a terminal (pipes): no bar. A pseudo-terminal: a bar with images/s."""
    piped = cxr_edge("classify", folder, "--out", tmp_path / "a.csv", "--model", binary_model)
    assert "img/s" not in piped.stderr and "classified" in piped.stderr
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "cxr_edge", "classify", folder, "--out", tmp_path / "b.csv",
                             "--model", binary_model], cwd=REPO, stderr=follower, stdout=subprocess.DEVNULL)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    proc.wait()
    os.close(leader)
    assert proc.returncode == 0
    assert b"img/s" in seen and b"5/5" in seen


def test_quiet_prints_nothing_not_even_the_runtime_info_lines(folder, binary_model, tmp_path) -> None:
    result = cxr_edge("classify", folder, "--out", tmp_path / "a.csv", "--model", binary_model, "--quiet")
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.parametrize("files", [[], ["notes.txt", ".hidden.png"]], ids=["empty", "no-images"])
def test_no_image_files_is_an_error_even_with_quiet(cli, tmp_path, binary_model, report_rows, files) -> None:
    share = tmp_path / "share"
    share.mkdir()
    for name in files:
        (share / name).write_text("x")
    out = tmp_path / "report.csv"
    result = cli("classify", share, "--out", out, "--model", binary_model, "--quiet")
    assert result.exit_code == 1 and f"no image files found in {share}" in result.stderr
    assert out.exists() and report_rows(out) == []


def test_help_documents_the_exit_codes(cli) -> None:
    result = cli("classify", "--help")
    assert result.exit_code == 0
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"  {code}" in result.stdout
    assert "--resume" in result.stdout and "--workers" in result.stdout and "--threads" in result.stdout


def test_version_and_python_dash_m() -> None:
    result = cxr_edge("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_missing_path_is_a_usage_error(cli, tmp_path) -> None:
    result = cli("classify", tmp_path / "nope", "--out", tmp_path / "r.csv")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_info_prints_a_short_summary_and_the_whole_manifest_only_with_json(cli, binary_model) -> None:
    """It printed all 346 lines of the manifest; a technician wants the model, its threshold and the gate."""
    model = bundle.load_bundle(binary_model)
    result = cli("info", "--model", binary_model)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) <= 12
    assert "interpreter: " in result.stdout and "numpy" in result.stdout and "pillow" in result.stdout
    assert f"model: {model.name}" in result.stdout and model.short_id in result.stdout
    assert f"labels: {', '.join(model.labels)}; flagged when {model.rule.score_name} >= {model.threshold:g}" in result.stdout
    assert "gate: none" in result.stdout and "test-time views: film" in result.stdout
    assert "adapted: no (as converted)" in result.stdout
    assert '"labels"' not in result.stdout and "cxr-edge info --json" in result.stdout
    whole = cli("info", "--model", binary_model, "--json")
    assert whole.exit_code == 0 and json.loads(whole.stdout) == model.manifest


def test_info_says_which_bundle_a_model_was_adapted_from(cli, binary_model, copy_bundle, tmp_path) -> None:
    manifest = copy_bundle(binary_model, tmp_path / "adapted")
    record = json.loads(manifest.read_text())
    record["adapted"] = {"base": {"name": "pneumonia", "version": "2.4.0", "sha256": "594b89e6ce8c" + "0" * 52},
                         "date": "2026-12-07"}
    manifest.write_text(json.dumps(record))
    result = cli("info", "--model", manifest)
    assert result.exit_code == 0, result.stderr
    assert "adapted: from pneumonia 2.4.0 (sha256 594b89e6ce8c) on 2026-12-07" in result.stdout
    record["adapted"] = "yes"  # a record this cxr-edge cannot read is said so, not a traceback
    manifest.write_text(json.dumps(record))
    assert "adapted: yes (a record this cxr-edge cannot read)" in cli("info", "--model", manifest).stdout


def test_info_help_documents_its_own_exit_codes(cli) -> None:
    result = cli("info", "--help")
    assert result.exit_code == 0 and "  3  fatal: model missing or damaged" in result.stdout
    assert "inputs could not be read" not in result.stdout and "--resume" not in result.stdout


def test_info_with_a_missing_model_is_fatal(cli, tmp_path) -> None:
    result = cli("info", "--model", tmp_path / "gone.json")
    assert result.exit_code == 3 and "gone.json" in result.stderr


def test_without_any_interpreter_the_cli_says_how_to_install_one(folder, binary_model, tmp_path) -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('ai_edge_litert', 'tflite_runtime', 'tensorflow'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cxr_edge.cli import main\n"
        "main(sys.argv[1:], prog_name='cxr-edge')\n"
    )
    args = ["classify", folder, "--out", tmp_path / "r.csv", "--model", binary_model]
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 3
    assert "no TFLite interpreter found" in result.stderr and "pip install" in result.stderr
    assert "Traceback" not in result.stderr


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "command, library, resumable",
    [
        (["classify", "--out", "r.csv"], "cxr_edge.classify.classify_to_report", True),
        (["evaluate"], "cxr_edge.review.evaluate.run", False),  # no --resume: no hint at an option it lacks
    ],
)
def test_ctrl_c_exits_130_and_advises_resume_only_where_there_is_one(cli, tmp_path, binary_model, monkeypatch,
                                                                     command, library, resumable) -> None:
    monkeypatch.setattr(library, interrupt)
    monkeypatch.chdir(tmp_path)
    result = cli(command[0], tmp_path, *command[1:], "--model", binary_model)
    assert result.exit_code == 130 and "interrupted" in result.stderr
    assert ("--resume" in result.stderr) == resumable


SPELLINGS = {
    "relative": lambda day: "day",
    "dot-prefixed": lambda day: "./day",
    "trailing slash": lambda day: "day/",
    "absolute": lambda day: str(day),
    "through ..": lambda day: "day/../day",
    "symlinked folder": lambda day: "link",
}


@pytest.mark.parametrize("first", ["relative", "absolute"])
@pytest.mark.parametrize("spelling", SPELLINGS)
def test_resume_never_adds_a_second_row_for_a_film_however_its_folder_is_spelled(
        cli, tmp_path, make_image, binary_model, report_rows, monkeypatch, first, spelling) -> None:
    day = tmp_path / "day"
    for i in range(3):
        make_image(day / f"IM-000{i}.jpeg", seed=i)
    (tmp_path / "link").symlink_to(day, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert cli("classify", SPELLINGS[first](day), "--out", "r.csv", "--model", binary_model).exit_code == 0
    result = cli("classify", SPELLINGS[spelling](day), "--out", "r.csv", "--model", binary_model, "--resume")
    assert result.exit_code == 0, result.stderr
    assert len(report_rows(tmp_path / "r.csv")) == 3
    assert "0 classified" in result.stderr and "3 already in the report" in result.stderr


def test_one_run_given_the_same_folder_twice_by_two_spellings_reports_each_film_once(
        cli, tmp_path, make_image, binary_model, report_rows, monkeypatch) -> None:
    make_image(tmp_path / "day" / "IM-0001.jpeg")
    (tmp_path / "link").symlink_to(tmp_path / "day", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert cli("classify", "day", "link", str(tmp_path / "day"), "--out", "r.csv", "--model", binary_model).exit_code == 0
    assert [r["path"] for r in report_rows(tmp_path / "r.csv")] == ["day/IM-0001.jpeg"]


def test_linked_files_stay_inputs_of_their_own(cli, tmp_path, make_image, binary_model, report_rows,
                                               monkeypatch) -> None:
    """The benchmarks' workloads repeat one film under many linked names: each is a row."""
    film = make_image(tmp_path / "film.png")
    for name in ("a.png", "b.png"):
        (tmp_path / "day" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "day" / name).symlink_to(film)
    monkeypatch.chdir(tmp_path)
    assert cli("classify", "day", "--out", "r.csv", "--model", binary_model).exit_code == 0
    assert cli("classify", "./day", "--out", "r.csv", "--model", binary_model, "--resume").exit_code == 0
    assert [r["path"] for r in report_rows(tmp_path / "r.csv")] == ["day/a.png", "day/b.png"]


def test_a_report_that_already_holds_a_film_twice_says_so(cli, tmp_path, make_image, binary_model, monkeypatch) -> None:
    """A report written by cxr-edge 0.6.0 after a resume with another spelling of the folder."""
    for i in range(2):
        make_image(tmp_path / "day" / f"IM-000{i}.jpeg", seed=i)
    monkeypatch.chdir(tmp_path)
    assert cli("classify", "day", "--out", "a.csv", "--model", binary_model).exit_code == 0
    assert cli("classify", tmp_path / "day", "--out", "b.csv", "--model", binary_model).exit_code == 0
    twice = Path("a.csv").read_bytes() + Path("b.csv").read_bytes().split(b"\r\n", 1)[1]
    Path("r.csv").write_bytes(twice)
    result = cli("classify", "day", "--out", "r.csv", "--model", binary_model, "--resume")
    assert result.exit_code == 0, result.stderr
    assert "2 films appear more than once in r.csv" in result.stderr
    assert "e.g. day/IM-0000.jpeg" in result.stderr
    paged = cli("page", "r.csv", "--html", "p.html", "--model", binary_model)
    assert paged.exit_code == 0 and "2 films appear more than once" in paged.stderr
    assert "2 films appear more than once" in Path("p.html").read_text()


def test_running_the_days_command_again_names_the_report_and_how_to_go_on(cli, folder, binary_model,
                                                                          tmp_path) -> None:
    """It said only 'triage.html exists; use --overwrite', which would throw the day's report away."""
    args = ["classify", folder, "--out", tmp_path / "r.csv", "--html", tmp_path / "triage.html", "--model",
            binary_model]
    assert cli(*args).exit_code == 0
    before = (tmp_path / "r.csv").read_bytes()
    result = cli(*args)
    assert result.exit_code == 2
    assert f"{tmp_path / 'r.csv'} (and {tmp_path / 'triage.html'}) already exists" in result.stderr
    assert "--resume to continue it" in result.stderr and "--overwrite" in result.stderr
    assert (tmp_path / "r.csv").read_bytes() == before
    assert cli(*args, "--resume").exit_code == 0


def test_a_folder_without_images_writes_no_page_and_names_the_files_it_passed_over(cli, tmp_path,
                                                                                  binary_model) -> None:
    pdfs = tmp_path / "pdfs"
    for name in ("a.pdf", "b.pdf", "c.docx", "d.txt", ".hidden.png"):
        (pdfs / name).parent.mkdir(exist_ok=True)
        (pdfs / name).write_text("x")
    page = tmp_path / "triage.html"
    result = cli("classify", pdfs, "--out", tmp_path / "r.csv", "--html", page, "--model", binary_model)
    assert result.exit_code == 1 and not page.exists()
    assert (f"no image files found in {pdfs}; passed over {pdfs.as_posix()}/a.pdf, {pdfs.as_posix()}/b.pdf, "
            f"{pdfs.as_posix()}/c.docx and 1 more") in result.stderr
    assert ".hidden.png" not in result.stderr and "JPEG, PNG" in result.stderr
