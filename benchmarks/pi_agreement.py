"""Do the emulated Raspberry Pi runs decide as this machine does? The table of ``ci/pi-emulated.sh``.

``python benchmarks/pi_agreement.py --reports DIR --reference x86_64 --runs arm64 armhf
--models pneumonia subtype`` reads ``DIR/{run}-{model}.csv`` (cxr-edge reports of the same
files), ``{run}-{model}.seconds`` (the classify's wall time) and ``{run}-info.txt`` (``cxr-edge
info``), and compares each run's rows with the reference's by path: the same status, the same
decision, the largest change of any probability column, and the films within that change of
the threshold (the ones a runtime's rounding could flip). It prints a markdown table and
exits 1 when a row is missing, a status differs (``error`` and ``rejected`` must match), or a
decision differs on a film farther than ``--tolerance`` from the rule that decided it.
A flip closer than that is listed, not failed: int8 kernels round differently between
runtimes (tflite-runtime 2.14 on armhf has no XNNPACK), by up to 0.0625 as measured.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from backend_agreement import agreement, read_report

TOLERANCE = 0.07  # documented in docs/pi.md: armhf's largest measured change was 0.0625

Rows = dict[str, dict[str, str]]


@dataclass
class Comparison:
    """One run and model against the reference."""

    run: str
    model: str
    interpreter: str = ""
    rows: int = 0
    same_status: int = 0
    same_decision: int = 0
    compared: int = 0  # rows ok in both, whose decisions and probabilities are compared
    max_dp: float = 0.0
    seconds_per_image: float | None = None
    near_threshold: list[str] = field(default_factory=list)
    flips_near: list[str] = field(default_factory=list)  # decision changed within the tolerance
    disagreements: list[str] = field(default_factory=list)  # what fails the check

    @property
    def failed(self) -> bool:
        return bool(self.disagreements)


def flagged(row: dict[str, str]) -> bool:
    """The screening decision: probability at or above the threshold (float64, as cxr-edge compares)."""
    return float(row["probability"]) >= float(row["threshold"])


def decision_margin(reference: dict[str, str], other: dict[str, str]) -> float:
    """How far the reference film stood from the rule that gave the two runs different labels.

    A changed flag is decided by the threshold; two flagged films with different labels by the
    larger of the two labels' probabilities (multi-class models).
    """
    if flagged(reference) != flagged(other):
        return abs(float(reference["probability"]) - float(reference["threshold"]))
    first, second = reference["prediction"], other["prediction"]
    return abs(float(reference[f"p_{first}"]) - float(reference[f"p_{second}"]))


def status_differences(reference: Rows, other: Rows) -> list[str]:
    """Rows that one report lacks, or whose status (ok, error, rejected, ...) differs."""
    missing = [f"{path}: only in the reference" for path in reference.keys() - other.keys()]
    extra = [f"{path}: not in the reference" for path in other.keys() - reference.keys()]
    changed = [f"{path}: status {reference[path]['status']} -> {other[path]['status']}"
               for path in reference.keys() & other.keys() if reference[path]["status"] != other[path]["status"]]
    return sorted(missing + extra + changed)


def compare(reference: Rows, other: Rows, tolerance: float = TOLERANCE) -> Comparison:
    """Compare two reports of the same files (see the module's docstring for the rule)."""
    result = Comparison(run="", model="", rows=len(reference.keys() | other.keys()))
    statuses = status_differences(reference, other)
    result.same_status = result.rows - len(statuses)
    ok = sorted(p for p in reference.keys() & other.keys() if reference[p]["status"] == other[p]["status"] == "ok")
    common = agreement({p: reference[p] for p in ok}, {p: other[p] for p in ok})
    result.compared, result.same_decision, result.max_dp = common["files"], common["same_label"], common["max_abs_dp"]
    result.same_decision += result.same_status - result.compared  # equal non-ok statuses decide alike
    result.near_threshold = [p for p in ok if abs(float(reference[p]["probability"])
                                                  - float(reference[p]["threshold"])) <= result.max_dp]
    for change in common["changed"]:
        path = change["path"]
        margin = decision_margin(reference[path], other[path])
        note = f"{path}: {' -> '.join(change['labels'])} ({margin:.4f} from the decision rule)"
        (result.flips_near if margin <= tolerance else result.disagreements).append(note)
    result.disagreements = statuses + result.disagreements
    return result


def run_facts(reports: Path, run: str, model: str, rows: int) -> tuple[str, float | None]:
    """The run's interpreter (from ``cxr-edge info``) and wall seconds per image of its classify."""
    info = reports / f"{run}-info.txt"
    lines = info.read_text(encoding="utf-8").splitlines() if info.exists() else []
    python = next((line.split("(")[-1].rstrip(")") for line in lines if line.startswith("python ")), "")
    backend = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("interpreter:")), "?")
    seconds = reports / f"{run}-{model}.seconds"
    per_image = float(seconds.read_text()) / rows if seconds.exists() and rows else None
    return f"{backend} ({python})" if python else backend, per_image


def compare_run(reports: Path, reference: str, run: str, model: str, tolerance: float) -> Comparison:
    """One run's report against the reference's, with its interpreter and speed."""
    result = compare(read_report(reports / f"{reference}-{model}.csv"),
                     read_report(reports / f"{run}-{model}.csv"), tolerance)
    result.run, result.model = run, model
    result.interpreter, result.seconds_per_image = run_facts(reports, run, model, result.rows)
    return result


def markdown(results: list[Comparison], reference: str, reference_interpreter: str, tolerance: float) -> str:
    """The table, then every listed film: failures, flips within the tolerance, films near the threshold."""
    lines = [f"Reference: {reference}, {reference_interpreter}. Tolerance {tolerance:g}.", "",
             "| run | model | interpreter | rows | same status | same decision | largest probability difference"
             " | films within it of the threshold | s per image |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        speed = f"{r.seconds_per_image:.2f}" if r.seconds_per_image is not None else ""
        lines.append(f"| {r.run} | {r.model} | {r.interpreter} | {r.rows} | {r.same_status} | {r.same_decision}"
                     f" | {r.max_dp:.4f} | {len(r.near_threshold)} | {speed} |")
    for r in results:
        for title, paths in (("DISAGREES", r.disagreements), ("flipped within the tolerance", r.flips_near),
                             ("within the largest difference of the threshold", r.near_threshold)):
            lines += [f"- {r.run} {r.model}, {title}: {path}" for path in paths]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=Path, required=True, help="folder of {run}-{model}.csv reports")
    parser.add_argument("--reference", default="x86_64", help="the run the others are compared with")
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--models", nargs="+", default=["pneumonia", "subtype"])
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="a decision may change on a film this close to the threshold (default %(default)s)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    results = [compare_run(args.reports, args.reference, run, model, args.tolerance)
               for run in args.runs for model in args.models]
    reference_interpreter = run_facts(args.reports, args.reference, args.models[0], 0)[0]
    table = markdown(results, args.reference, reference_interpreter, args.tolerance)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table, encoding="utf-8")
    failed = [f"{r.run} {r.model}" for r in results if r.failed]
    if failed:
        print(f"DECISIONS DIFFER from {args.reference}: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
