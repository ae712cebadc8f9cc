"""Turn raw measurements into the figures that matter, the ratios, the targets and a table.

Rates are pooled over the rounds (all images over all seconds), for ours and for every
stage variant alike. Ours and the stages alternate in every round, so over the run they
meet the same background load; a best-of-rounds estimate would favour the many short
stage measurements, which are likelier to fall into a quiet moment.
"""

from __future__ import annotations

import argparse
import datetime
import math
from typing import Any, Iterable

import procs
import workload

# Issue 35's targets on the 2-core x86_64 development machine (issue 8's, with the Coral example's loop added
# and ours/limit raised from 0.80 now that the limit counts the bundle's whole work per film).
TARGETS = {
    "ours_vs_limit": (">=", 0.90),
    "ours_vs_coral": (">=", 2.5),
    "ours_vs_seed": (">=", 10.0),
    "peak_rss_mib": ("<=", 150.0),
    "help_s": ("<=", 0.3),
    "one_image_s": ("<=", 1.5),
}
LIMIT_FORMULA = "1 / (1/D + 1/C), D and C each stage's best images/s alone"


def pipeline_limit(decode: float, classify: float) -> float:
    """Best images/s for decode then classify when both stages share all the cores.

    Each image needs 1/D seconds of the whole machine to decode and 1/C to classify (every
    invoke of its test-time views, the gate, the head), whatever
    the overlap, so no schedule beats 1 / (1/D + 1/I). (The min over stages, min(D, I), is
    the limit of a pipeline whose stages have cores of their own; here they share them.)
    D and I are each stage's best variant: one thread, a thread per core, or a process per
    core, so an interpreter that gains nothing from a second thread still counts as using
    two, and on a busy machine (where a second thread may gain nothing) one thread counts.
    """
    return 1.0 / (1.0 / decode + 1.0 / classify)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b and not math.isnan(a) and not math.isnan(b) else None


def _pooled(parts: Iterable[tuple[float, float]]) -> float | None:
    """Total images over total seconds."""
    images, seconds = map(sum, zip(*parts)) if parts else (0, 0)
    return images / seconds if images and seconds else None


def _latency(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * procs.percentile(seconds, 50), "p95_ms": 1000 * procs.percentile(seconds, 95)}


def _cpu_ms(steady: list[dict[str, Any]]) -> float | None:
    """CPU ms per result between the first result and the last, pooled (None where /proc said nothing)."""
    cpu = [x["cpu_s"] for x in steady]
    rows = sum(x["rows"] for x in steady)
    return 1000 * sum(cpu) / rows if None not in cpu and rows else None


def _ours(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    steady = [r["ours"]["steady"] for r in rounds]
    rate = _pooled([(x["rows"], x["seconds"]) for x in steady])
    cpu_ms = _cpu_ms(steady) if rate else None
    return {
        "images_per_s": rate,
        "whole_process_images_per_s": _pooled([(r["ours"]["rows"], r["ours"]["wall_s"]) for r in rounds]),
        **_latency([t for r in rounds for t in r["stages"]["one_image_s"]]),
        "peak_rss_mib": max(r["ours"]["peak_rss_mib"] for r in rounds),
        "errors": max(r["ours"]["errors"] for r in rounds),
        "statuses": rounds[0]["ours"]["statuses"],
        "cpu_ms_per_image": cpu_ms,
        "cores_busy": rate * cpu_ms / 1000 if rate and cpu_ms else None,
    }


def _stage_rates(rounds: list[dict[str, Any]], stage: str) -> dict[str, dict[int, float]]:
    """Pooled images/s of each variant of ``stage``: {"threads"|"processes": {cores: rate}}."""
    variants = rounds[0]["stages"][stage]
    return {
        kind: {int(c): _pooled([(r["stages"][stage][kind][c]["images"], r["stages"][stage][kind][c]["seconds"])
                                for r in rounds]) for c in by_cores}
        for kind, by_cores in variants.items()
    }


def _stage_cpu_ms(rounds: list[dict[str, Any]], stage: str) -> float | None:
    """CPU ms per image of ``stage`` at its cheapest thread count (in-process variants only)."""
    per_count = []
    for c in rounds[0]["stages"][stage]["threads"]:
        timings = [r["stages"][stage]["threads"][c] for r in rounds]
        if all(t["cpu_s"] is not None for t in timings):
            per_count.append(1000 * sum(t["cpu_s"] for t in timings) / sum(t["images"] for t in timings))
    return min(per_count) if per_count else None


def _limit(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    decode, classify = _stage_rates(rounds, "decode"), _stage_rates(rounds, "classify")
    best_decode = max(rate or 0.0 for v in decode.values() for rate in v.values())
    best_classify = max(rate or 0.0 for v in classify.values() for rate in v.values())
    return {
        "images_per_s": pipeline_limit(best_decode, best_classify),
        "formula": LIMIT_FORMULA,
        "decode_images_per_s": best_decode,
        "classify_images_per_s": best_classify,
        "decode": decode,
        "classify": classify,
        "views": rounds[0]["stages"]["views"],
        "per_film_ms": {name: procs.median([r["stages"]["per_film_ms"][name] for r in rounds])
                        for name in rounds[0]["stages"]["per_film_ms"]},
    }


def _cpu(rounds: list[dict[str, Any]], ours_ms: float | None) -> dict[str, Any]:
    """CPU per image of each stage alone against ours: how much work ours adds."""
    decode, classify = _stage_cpu_ms(rounds, "decode"), _stage_cpu_ms(rounds, "classify")
    floor = decode + classify if decode is not None and classify is not None else None
    return {"decode_ms": decode, "classify_ms": classify, "limit_ms": floor, "ours_ms": ours_ms,
            "limit_vs_ours": _ratio(floor, ours_ms)}


def _seed(seed: dict[str, Any] | None, ours_probs: list[float]) -> dict[str, Any] | None:
    if seed is None:
        return None
    pairs = [(a, b) for a, b in zip(ours_probs, seed["probabilities"]) if not math.isnan(a)]
    return {
        "images_per_s": seed["images_per_s"],
        "whole_process_images_per_s": seed["whole_process_images_per_s"],
        **_latency(seed["latency_s"]),
        "peak_rss_mib": seed["peak_rss_mib"],
        "cpu_ms_per_image": 1000 * seed["cpu_s"] / len(seed["probabilities"]),  # whole process: TensorFlow's start too
        "startup_s": seed["startup_s"],
        "keras": seed["keras"],
        "untrained": seed["untrained"],
        # Same run's model, different reading of the file (Keras nearest vs the contract): close, not equal.
        "mean_abs_probability_difference": sum(abs(a - b) for a, b in pairs) / len(pairs)
        if pairs and not seed["untrained"] else None,
    }


def _coral(rounds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The Coral loop's rates pooled over the rounds, as ours are."""
    runs = [r["coral"] for r in rounds if r["coral"]]
    if not runs:
        return None
    return {
        "images_per_s": _pooled([(x["steady"]["rows"], x["steady"]["seconds"]) for x in runs]),
        "whole_process_images_per_s": _pooled([(x["rows"], x["wall_s"]) for x in runs]),
        "peak_rss_mib": max(x["peak_rss_mib"] for x in runs),
        "cpu_ms_per_image": _cpu_ms([x["steady"] for x in runs]),
    }


def _cold(cold: dict[str, Any] | None) -> dict[str, Any] | None:
    if cold is None:
        return None
    return {
        "help_s": procs.median(cold["help_s"]),
        "help_cpu_s": procs.median(cold["help_cpu_s"]),
        "one_image_s": procs.median(cold["one_image_s"]),
        "one_image_cpu_s": procs.median(cold["one_image_cpu_s"]),
        "runs": len(cold["help_s"]),
        "one_image_file": cold["one_image_file"],
        "one_image_bytes": cold["one_image_bytes"],
        "one_image_peak_rss_mib": cold["one_image_peak_rss_mib"],
    }


def _targets(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    peak = max([s["ours"]["peak_rss_mib"], *(m["peak_rss_mib"] for m in s["memory"])])
    values = {
        "ours_vs_limit": s["ratios"]["ours_vs_limit"],
        "ours_vs_coral": s["ratios"]["ours_vs_coral"],
        "ours_vs_seed": s["ratios"]["ours_vs_seed"],
        "peak_rss_mib": peak,
        "help_s": s["cold"]["help_s"] if s["cold"] else None,
        "one_image_s": s["cold"]["one_image_s"] if s["cold"] else None,
    }
    out = {}
    for name, (op, target) in TARGETS.items():
        value = values[name]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        out[name] = {"value": value, "target": f"{op} {target:g}", "met": met}
    return out


def summarise(raw: dict[str, Any], setup: Any, args: argparse.Namespace, command: str,
              started: datetime.datetime) -> dict[str, Any]:
    rounds = raw["rounds"]
    ours = _ours(rounds)
    limit = _limit(rounds)
    seed = _seed(raw["seed"], rounds[0]["ours"]["probabilities"])
    coral = _coral(rounds)
    loads = [r[k]["load"] for r in rounds for k in ("ours", "stages", "coral") if r[k]]
    loads += [x["load"] for x in (raw["seed"], raw["cold"]) if x] + [m["load"] for m in raw["memory"]]
    s: dict[str, Any] = {
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "machine": workload.machine(),
        "load_1min": {"min": min(loads), "max": max(loads), "end": workload.load()},
        "model": str(setup.manifest),
        "files": {"n": len(setup.files), "distinct": len(setup.sources), "data": str(args.data)},
        "rounds": len(rounds),
        "ours": ours,
        "coral": coral,
        "seed": seed,
        "limit": limit,
        "cpu_per_image": _cpu(rounds, ours["cpu_ms_per_image"]),
        "ratios": {
            "ours_vs_coral": _ratio(ours["whole_process_images_per_s"],
                                    coral["whole_process_images_per_s"] if coral else None),
            "ours_vs_seed": _ratio(ours["whole_process_images_per_s"],
                                   seed["whole_process_images_per_s"] if seed else None),
            # CPU per image hardly depends on the machine's load, where rates do (the Coral loop uses one core).
            "coral_vs_ours_cpu": _ratio(coral["cpu_ms_per_image"] if coral else None, ours["cpu_ms_per_image"]),
            "ours_vs_limit": _ratio(ours["images_per_s"], limit["images_per_s"]),
            "per_round_ours_vs_limit": [_ratio(_ours([r])["images_per_s"], _limit([r])["images_per_s"])
                                        for r in rounds],
        },
        "cold": _cold(raw["cold"]),
        "memory": [{k: m[k] for k in ("files", "peak_rss_mib", "whole_process_images_per_s")} for m in raw["memory"]],
    }
    s["targets"] = _targets(s)
    return s


def _num(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _mark(target: dict[str, Any]) -> str:
    return {True: "ok", False: "MISSED", None: "not measured"}[target["met"]]


def _row(way: str, x: dict[str, Any], latency: bool = True) -> str:
    """One way's row: steady and whole-process rates, CPU per image, latency where measured, peak RSS."""
    p50, p95 = (_num(x["p50_ms"]), _num(x["p95_ms"])) if latency else ("", "")
    return (f"| {way} | {_num(x['images_per_s'])} | {_num(x['whole_process_images_per_s'])} "
            f"| {_num(x['cpu_ms_per_image'])} | {p50} | {p95} | {_num(x['peak_rss_mib'], '.0f')} |")


def _statuses(ours: dict[str, Any]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(ours["statuses"].items()))


def table(s: dict[str, Any]) -> str:
    """The human summary: the command, a Markdown table, then the ratios, cold start, memory and targets."""
    m, ours, coral, seed, limit = s["machine"], s["ours"], s["coral"], s["seed"], s["limit"]
    n = m["cores"]
    views = " + ".join(limit["views"])
    lines = [
        f"$ {s['command']}",
        "",
        f"cxr-edge benchmark, {s['started']}: {s['files']['n']} files ({s['files']['distinct']} distinct images "
        f"from {s['files']['data']}), model {s['model']} (views: {views}); ours: {_statuses(ours)}",
        f"- machine: {m['cpu']}, {m['cores']} cores, {m['arch']}, {m['system']}; "
        f"load average {s['load_1min']['min']:.1f}..{s['load_1min']['max']:.1f} during the run",
        "",
        "| way | images/s | whole process, images/s | CPU ms per image | p50 ms | p95 ms | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        _row("cxr-edge classify (int8 TFLite, gate, head, test-time views)", ours),
    ]
    if coral:
        lines.append(_row("Coral example's loop (open, LANCZOS resize, invoke per file; film view only)", coral,
                          latency=False))
    if seed:
        lines.append(_row("seed way (Keras load_img + predict, one by one)"
                          + (", untrained stand-in" if seed["untrained"] else ""), seed))
    lines += [
        f"| limit: decode + resize alone (best of 1 thread, {n} threads, {n} processes) "
        f"| {_num(limit['decode_images_per_s'])} | | | | | |",
        f"| limit: classify alone (Classifier.run per film: {views}, gate, head; same variants) "
        f"| {_num(limit['classify_images_per_s'])} | | | | | |",
        f"| limit: both stages on this machine | {_num(limit['images_per_s'])} | | | | | |",
        "",
        f"- ours / limit: {_num(s['ratios']['ours_vs_limit'], '.2f')} (steady rates; limit = {limit['formula']})   "
        f"ours / Coral loop: {_num(s['ratios']['ours_vs_coral'], '.1f')}x   "
        f"ours / seed: {_num(s['ratios']['ours_vs_seed'], '.1f')}x (whole processes)",
        f"- CPU per image, Coral loop / ours: {_num(s['ratios']['coral_vs_ours_cpu'], '.2f')} (the loop uses one "
        f"core, ours every core: on an idle machine ours / Coral loop would be about this times the cores ours gets)",
    ]
    cpu = s["cpu_per_image"]
    if cpu["limit_ms"] and cpu["ours_ms"]:
        lines.append(f"- CPU per image (all threads of the process): ours {cpu['ours_ms']:.1f} ms "
                     f"({ours['cores_busy']:.2f} cores busy); decode {cpu['decode_ms']:.1f} + classify "
                     f"{cpu['classify_ms']:.1f} = {cpu['limit_ms']:.1f} ms alone; limit/ours {cpu['limit_vs_ours']:.2f}")
    lines.append("- one film's time, median ms, one thread: " + ", ".join(
        f"{name} {ms:.2f}" for name, ms in limit["per_film_ms"].items()))
    if s["cold"]:
        c = s["cold"]
        lines.append(f"- cold start (median of {c['runs']} whole processes): cxr-edge --help {c['help_s']:.2f} s "
                     f"({c['help_cpu_s']:.2f} s CPU); classify one image ({c['one_image_bytes'] // 1024} KB JPEG) "
                     f"{c['one_image_s']:.2f} s ({c['one_image_cpu_s']:.2f} s CPU)")
    if s["memory"]:
        lines.append("- peak RSS by folder size: " + ", ".join(
            f"{x['files']:,} files {x['peak_rss_mib']:.0f} MiB" for x in s["memory"]))
    lines.append("- targets: " + "; ".join(
        f"{name} {_num(t['value'], '.2f')} ({t['target']}) {_mark(t)}" for name, t in s["targets"].items()))
    return "\n".join(lines)
