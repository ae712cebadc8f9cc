"""Turn raw measurements into the figures that matter, the ratios, the targets and a table.

Throughputs are the best of the rounds (noise from other work on the machine only ever
slows a run down), for ours and for the limit alike; both alternate in every round, so
a busy spell hits both.
"""

from __future__ import annotations

import argparse
import datetime
import math
from typing import Any

import procs
import workload

# Issue 8's targets on the 2-core x86_64 development machine.
TARGETS = {
    "ours_vs_limit": (">=", 0.80),
    "ours_vs_seed": (">=", 10.0),
    "peak_rss_mib": ("<=", 150.0),
    "help_s": ("<=", 0.3),
    "one_image_s": ("<=", 1.5),
}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b and not math.isnan(a) and not math.isnan(b) else None


def _latency(seconds: list[float]) -> dict[str, float]:
    return {"p50_ms": 1000 * procs.percentile(seconds, 50), "p95_ms": 1000 * procs.percentile(seconds, 95)}


def _ours(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    best = max(rounds, key=lambda r: r["ours"]["images_per_s"] or 0.0)
    latencies = [_latency(r["stages"]["one_image_s"]) for r in rounds]
    return {
        "images_per_s": best["ours"]["images_per_s"],
        "whole_process_images_per_s": max(r["ours"]["whole_process_images_per_s"] for r in rounds),
        "p50_ms": min(lat["p50_ms"] for lat in latencies),
        "p95_ms": min(lat["p95_ms"] for lat in latencies),
        "peak_rss_mib": max(r["ours"]["peak_rss_mib"] for r in rounds),
        "errors": max(r["ours"]["errors"] for r in rounds),
        "cpu_ms_per_image": _least(r["ours"]["cpu_ms_per_image"] for r in rounds),
        "cores_busy": (best["ours"]["images_per_s"] or 0.0) * (best["ours"]["cpu_ms_per_image"] or 0.0) / 1000,
    }


def _least(values: Any) -> float | None:
    present = [v for v in values if v is not None and not math.isnan(v)]
    return min(present) if present else None


def _cpu(rounds: list[dict[str, Any]], ours_ms: float | None) -> dict[str, Any]:
    """CPU per image: each stage at its cheapest thread count, against ours (robust to other load)."""
    stage = {
        name: _least(ms for r in rounds for ms in r["stages"]["cpu_ms"][name].values()) for name in ("decode", "invoke")
    }
    floor = stage["decode"] + stage["invoke"] if None not in stage.values() else None
    return {"decode_ms": stage["decode"], "invoke_ms": stage["invoke"], "limit_ms": floor, "ours_ms": ours_ms,
            "limit_vs_ours": _ratio(floor, ours_ms)}


def _limit(rounds: list[dict[str, Any]], cores: int) -> dict[str, Any]:
    best = max(rounds, key=lambda r: r["stages"]["limit"]["images_per_s"])["stages"]
    key = str(cores)
    return {
        "images_per_s": best["limit"]["images_per_s"],
        "formula": best["limit"]["formula"],
        "time_shared": best["limit"]["time_shared"],
        "best_split": best["limit"]["best_split"],
        "decode_images_per_s": max(r["stages"]["decode_best"][key] for r in rounds),
        "invoke_images_per_s": max(r["stages"]["invoke_best"][key] for r in rounds),
        "decode": best["decode"],
        "invoke": best["invoke"],
        "batch": best["batch"],
    }


def _seed(seed: dict[str, Any] | None, ours_probs: list[float]) -> dict[str, Any] | None:
    if seed is None:
        return None
    pairs = [(a, b) for a, b in zip(ours_probs, seed["probabilities"]) if not math.isnan(a)]
    return {
        "images_per_s": seed["images_per_s"],
        "whole_process_images_per_s": seed["whole_process_images_per_s"],
        **_latency(seed["latency_s"]),
        "peak_rss_mib": seed["peak_rss_mib"],
        "startup_s": seed["startup_s"],
        "keras": seed["keras"],
        # Same run's model, different reading of the file (Keras nearest vs the contract): close, not equal.
        "mean_abs_probability_difference": sum(abs(a - b) for a, b in pairs) / len(pairs) if pairs else None,
    }


def _cold(cold: dict[str, Any] | None) -> dict[str, Any] | None:
    if cold is None:
        return None
    return {
        "help_s": procs.median(cold["help_s"]),
        "one_image_s": procs.median(cold["one_image_s"]),
        "runs": len(cold["help_s"]),
        "one_image_file": cold["one_image_file"],
        "one_image_bytes": cold["one_image_bytes"],
        "one_image_peak_rss_mib": cold["one_image_peak_rss_mib"],
    }


def _targets(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    peak = max([s["ours"]["peak_rss_mib"], *(m["peak_rss_mib"] for m in s["memory"])])
    values = {
        "ours_vs_limit": s["ratios"]["ours_vs_limit"],
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
    limit = _limit(rounds, setup.cores)
    seed = _seed(raw["seed"], rounds[0]["ours"]["probabilities"])
    loads = [r[k]["load"] for r in rounds for k in ("ours", "stages")]
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
        "seed": seed,
        "limit": limit,
        "cpu_per_image": _cpu(rounds, ours["cpu_ms_per_image"]),
        "ratios": {
            "ours_vs_seed": _ratio(ours["images_per_s"], seed["images_per_s"] if seed else None),
            "ours_vs_limit": _ratio(ours["images_per_s"], limit["images_per_s"]),
            "per_round_ours_vs_limit": [
                _ratio(r["ours"]["images_per_s"], r["stages"]["limit"]["images_per_s"]) for r in rounds
            ],
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


def table(s: dict[str, Any]) -> str:
    """The human summary: a Markdown table plus the ratios, cold start, memory and targets."""
    m, ours, seed, limit = s["machine"], s["ours"], s["seed"], s["limit"]
    lines = [
        f"cxr-edge benchmark, {s['started']}: {s['files']['n']} files ({s['files']['distinct']} distinct "
        f"full-resolution X-rays), model {s['model']}",
        f"machine: {m['cpu']}, {m['cores']} cores, {m['arch']}, {m['system']}; "
        f"load average {s['load_1min']['min']:.1f}..{s['load_1min']['max']:.1f} during the run",
        f"command: {s['command']}",
        "",
        "| way | images/s | p50 ms | p95 ms | peak RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| cxr-edge classify (int8 TFLite, whole process) | {_num(ours['images_per_s'])} | {_num(ours['p50_ms'])} "
        f"| {_num(ours['p95_ms'])} | {_num(ours['peak_rss_mib'], '.0f')} |",
    ]
    if seed:
        lines.append(
            f"| seed way (Keras load_img + predict, one by one) | {_num(seed['images_per_s'])} | {_num(seed['p50_ms'])} "
            f"| {_num(seed['p95_ms'])} | {_num(seed['peak_rss_mib'], '.0f')} |"
        )
    lines += [
        f"| limit: decode + resize alone, all cores | {_num(limit['decode_images_per_s'])} | | | |",
        f"| limit: invoke alone (batch {limit['batch']}), all cores | {_num(limit['invoke_images_per_s'])} | | | |",
        f"| limit: both stages on this machine | {_num(limit['images_per_s'])} | | | |",
        "",
        f"ours / limit: {_num(s['ratios']['ours_vs_limit'], '.2f')}   "
        f"ours / seed: {_num(s['ratios']['ours_vs_seed'], '.1f')}x   "
        f"(limit = {limit['formula']})",
    ]
    cpu = s["cpu_per_image"]
    if cpu["limit_ms"] and cpu["ours_ms"]:
        lines.append(f"CPU per image (hardly affected by other load): ours {cpu['ours_ms']:.1f} ms "
                     f"({ours['cores_busy']:.2f} cores busy); decode {cpu['decode_ms']:.1f} + invoke "
                     f"{cpu['invoke_ms']:.1f} = {cpu['limit_ms']:.1f} ms alone; limit/ours {cpu['limit_vs_ours']:.2f}")
    if s["cold"]:
        c = s["cold"]
        lines.append(f"cold start (median of {c['runs']} whole processes): cxr-edge --help {c['help_s']:.2f} s; "
                     f"classify one image ({c['one_image_bytes'] // 1024} KB JPEG) {c['one_image_s']:.2f} s")
    if s["memory"]:
        lines.append("peak RSS by folder size: " + ", ".join(
            f"{x['files']:,} files {x['peak_rss_mib']:.0f} MiB" for x in s["memory"]))
    lines.append("targets: " + "; ".join(
        f"{name} {_num(t['value'], '.2f')} ({t['target']}) {_mark(t)}" for name, t in s["targets"].items()))
    return "\n".join(lines)
