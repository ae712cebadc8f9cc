"""The limit of the machine: each stage of cxr-edge's work alone, at full use of the cores.

Run as a child process by ``run_all.py`` (``python benchmarks/stages.py --model M --files LIST``);
prints one JSON object. Measures, on the same files as the end-to-end run:

* decode: ``cxr_edge.preprocess.load_image`` with the model's contract (draft mode,
  grayscale, bilinear squash), with 1 and n threads and with n processes;
* invoke: ``run_batch`` on decoded pixels in the engine's batch size, with interpreter
  threads 1 and n and with n processes of one thread each;
* one image alone: decode + classify of a single image in a warm process (the latency a
  user sees for one image, start-up aside).

Each variant is timed after a warm-up and reported raw (images, seconds, CPU seconds), so
``run_all.py`` can pool the rounds; the best variant per core count is what the machine
can do (``summary.pipeline_limit`` says how the two stages combine).
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


def timed(images: int, work: Callable[[], object], cpu: bool = True) -> dict[str, Any]:
    """Run ``work`` (``images`` images' worth) and say how long it took, in wall and CPU seconds.

    CPU is this whole process's (all its threads); None for work done in other processes.
    """
    cpu_start, start = time.process_time(), time.perf_counter()
    work()
    seconds = time.perf_counter() - start
    return {"images": images, "seconds": seconds, "cpu_s": time.process_time() - cpu_start if cpu else None}


def decode_threads(files: list[str], contract: Contract, threads: int) -> dict[str, Any]:
    """Decode ``files`` with a pool of ``threads`` threads, as the engine does."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda f: load_image(f, contract), files[:WARMUP]))
        return timed(len(files), lambda: list(pool.map(lambda f: load_image(f, contract), files)))


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


def decode_processes(files: list[str], contract: Contract, processes: int) -> dict[str, Any]:
    with _pool(processes, _init_decoder, (contract,)) as pool:
        pool.map(_decode_slice, [files[i:WARMUP:processes] for i in range(processes)])
        return timed(len(files), lambda: pool.map(_decode_slice, [files[i::processes] for i in range(processes)]),
                     cpu=False)


def invoke_threads(model_path: str, pixels: np.ndarray, count: int, threads: int) -> dict[str, Any]:
    """Invoke on ``pixels`` ``count`` times with ``threads`` interpreter threads."""
    interpreter = runtime.make_interpreter(model_path, threads=threads)
    for _ in range(2):
        runtime.run_batch(interpreter, pixels)

    def work() -> None:
        for _ in range(count):
            runtime.run_batch(interpreter, pixels)

    return timed(count * len(pixels), work)


def invoke_processes(model_path: str, pixels: np.ndarray, count: int, processes: int) -> dict[str, Any]:
    per_process = max(1, count // processes)
    with _pool(processes, _init_invoker, (model_path, pixels)) as pool:
        return timed(per_process * processes * len(pixels),
                     lambda: pool.map(_invoke_times, [per_process] * processes), cpu=False)


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
    """Every variant of each stage on ``files``: {stage: {"threads"|"processes": {cores: timing}}}."""
    bundle = load_bundle(bundle_path)
    contract, model = bundle.contract, str(bundle.model_path)
    counts = sorted({1, cores})  # one thread: the cheapest CPU per image; all cores: the rate
    pixels = np.stack([load_image(f, contract).pixels for f in (files * ENGINE_BATCH)[:ENGINE_BATCH]])
    invokes = max(1, len(files) // ENGINE_BATCH)
    decode = {"threads": {c: decode_threads(files, contract, c) for c in counts}}
    invoke = {"threads": {c: invoke_threads(model, pixels, invokes, c) for c in counts}}
    if cores > 1:
        decode["processes"] = {cores: decode_processes(files, contract, cores)}
        invoke["processes"] = {cores: invoke_processes(model, pixels, invokes, cores)}
    return {
        "files": len(files),
        "cores": cores,
        "batch": ENGINE_BATCH,
        "decode": decode,
        "invoke": invoke,
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
