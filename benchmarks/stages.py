"""The limit of the machine: each stage of cxr-edge's work alone, at full use of the cores.

Run as a child process by ``run_all.py`` (``python benchmarks/stages.py --model M --files LIST``);
prints one JSON object. Measures, on the same files as the end-to-end run:

* decode: ``cxr_edge.preprocess.load_image`` with the model's contract (draft mode,
  grayscale, bilinear squash), with 1..n threads and with n processes;
* invoke: ``run_batch`` on decoded pixels in the engine's batch size, with interpreter
  threads 1..n and with n processes of one thread each;
* one image alone: decode + classify of a single image in a warm process (the latency a
  user sees for one image, start-up aside).

Each variant is timed after a warm-up; the best variant per core count is what the
machine can do (see :func:`pipeline_limit` for how the stages combine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cxr_edge import runtime
from cxr_edge.bundle import load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import Contract, load_image

ENGINE_BATCH = 1  # the engine invokes one image at a time (batches of 4-8 measured no faster)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import read_list  # noqa: E402  (a sibling script, not a package)

WARMUP = 8  # images decoded or invoked before timing


def pipeline_limit(decode: dict[int, float], invoke: dict[int, float], cores: int) -> dict[str, Any]:
    """Best images/s for decode -> invoke on ``cores`` cores, from each stage's rate per core count.

    Two ways to share the cores, the better one is the limit:

    * time-sharing: every core decodes, then every core invokes; one image costs
      1/D(n) + 1/I(n) seconds of the whole machine, so the rate is 1 / (1/D(n) + 1/I(n));
    * dedicated cores: c cores decode while n - c invoke (a pipeline), so the rate is the
      slower stage, min(D(c), I(n - c)), at the best split c.

    A pipeline cannot beat both: its stages need the same total CPU work per image.
    """
    shared = 1.0 / (1.0 / decode[cores] + 1.0 / invoke[cores])
    splits = {c: min(decode[c], invoke[cores - c]) for c in range(1, cores) if c in decode and cores - c in invoke}
    best_split = max(splits, key=splits.get) if splits else None
    split_rate = splits[best_split] if best_split else 0.0
    return {
        "images_per_s": max(shared, split_rate),
        "time_shared": shared,
        "best_split": {"decode_cores": best_split, "invoke_cores": cores - best_split, "images_per_s": split_rate}
        if best_split
        else None,
        "formula": "max(1 / (1/D(n) + 1/I(n)), max over c of min(D(c), I(n-c)))",
    }


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _rate_and_cpu(images: int, work: Callable[[], object]) -> tuple[float, float]:
    """(images/s, CPU ms per image of this whole process) for ``work`` done in this process's threads."""
    cpu = time.process_time()
    wall = _timed(work)
    return images / wall, 1000 * (time.process_time() - cpu) / images


def decode_threads(files: list[str], contract: Contract, threads: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) decoding ``files`` with ``threads`` threads (as the engine does)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda f: load_image(f, contract), files[:WARMUP]))
        return _rate_and_cpu(len(files), lambda: list(pool.map(lambda f: load_image(f, contract), files)))


_STATE: dict[str, Any] = {}


def _init_decoder(contract: Contract) -> None:
    _STATE["contract"] = contract


def _decode_slice(files: list[str]) -> int:
    for f in files:
        load_image(f, _STATE["contract"])
    return len(files)


def _init_invoker(model_path: str, pixels: np.ndarray) -> None:
    _STATE["interpreter"] = runtime.make_interpreter(model_path, threads=1)
    _STATE["pixels"] = pixels
    runtime.run_batch(_STATE["interpreter"], pixels)


def _invoke_times(count: int) -> int:
    for _ in range(count):
        runtime.run_batch(_STATE["interpreter"], _STATE["pixels"])
    return count


def _pool(processes: int, initializer: Callable[..., None], args: tuple) -> Any:
    """A pool whose workers are all started and initialised before anything is timed."""
    pool = multiprocessing.get_context("spawn").Pool(processes, initializer, args)
    pool.map(time.sleep, [0.05] * processes * 2)
    return pool


def decode_processes(files: list[str], contract: Contract, processes: int) -> float:
    with _pool(processes, _init_decoder, (contract,)) as pool:
        pool.map(_decode_slice, [files[i:WARMUP:processes] for i in range(processes)])
        return len(files) / _timed(lambda: pool.map(_decode_slice, [files[i::processes] for i in range(processes)]))


def invoke_threads(model_path: str, pixels: np.ndarray, count: int, threads: int) -> tuple[float, float]:
    """(images/s, CPU ms per image) invoking ``pixels`` ``count`` times with ``threads`` interpreter threads."""
    interpreter = runtime.make_interpreter(model_path, threads=threads)
    for _ in range(2):
        runtime.run_batch(interpreter, pixels)

    def work() -> None:
        for _ in range(count):
            runtime.run_batch(interpreter, pixels)

    return _rate_and_cpu(count * len(pixels), work)


def invoke_processes(model_path: str, pixels: np.ndarray, count: int, processes: int) -> float:
    per_process = max(1, count // processes)
    with _pool(processes, _init_invoker, (model_path, pixels)) as pool:
        return per_process * processes * len(pixels) / _timed(lambda: pool.map(_invoke_times, [per_process] * processes))


def one_image_alone(files: list[str], bundle_path: str, threads: int) -> list[float]:
    """Seconds to decode and classify each file alone (batch 1) in a warm process."""
    classifier = Classifier(load_bundle(bundle_path), threads=threads)
    contract = classifier.bundle.contract
    classifier.run(Found(files[0], files[0]), load_image(files[0], contract))
    times = []
    for f in files:
        start = time.perf_counter()
        classifier.run(Found(f, f), load_image(f, contract))
        times.append(time.perf_counter() - start)
    return times


def measure(bundle_path: str, files: list[str], cores: int, latency_files: int) -> dict[str, Any]:
    bundle = load_bundle(bundle_path)
    contract, model = bundle.contract, str(bundle.model_path)
    counts = range(1, cores + 1)
    decode_runs = {c: decode_threads(files, contract, c) for c in counts}
    batch = np.stack([load_image(f, contract).pixels for f in (files * ENGINE_BATCH)[:ENGINE_BATCH]])
    invokes = max(1, len(files) // ENGINE_BATCH)
    invoke_runs = {c: invoke_threads(model, batch, invokes, c) for c in counts}
    decode = {"threads": {c: rate for c, (rate, _) in decode_runs.items()}}
    invoke = {"threads": {c: rate for c, (rate, _) in invoke_runs.items()}}
    if cores > 1:
        decode["processes"] = {cores: decode_processes(files, contract, cores)}
        invoke["processes"] = {cores: invoke_processes(model, batch, invokes, cores)}
    best_decode = {c: max(v.get(c, 0.0) for v in decode.values()) for c in counts}
    best_invoke = {c: max(v.get(c, 0.0) for v in invoke.values()) for c in counts}
    return {
        "files": len(files),
        "cores": cores,
        "batch": ENGINE_BATCH,
        "decode": decode,
        "invoke": invoke,
        "decode_best": best_decode,
        "invoke_best": best_invoke,
        "limit": pipeline_limit(best_decode, best_invoke, cores),
        # CPU of the whole process per image, by thread count: what each stage costs, whatever else runs.
        "cpu_ms": {"decode": {c: ms for c, (_, ms) in decode_runs.items()},
                   "invoke": {c: ms for c, (_, ms) in invoke_runs.items()}},
        "one_image_s": one_image_alone(files[:latency_files], bundle_path, cores),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="bundle manifest (.json)")
    parser.add_argument("--files", required=True, help="file with one image path a line")
    parser.add_argument("--cores", type=int, required=True)
    parser.add_argument("--latency-files", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, read_list(args.files), args.cores, args.latency_files)))


if __name__ == "__main__":
    main()
