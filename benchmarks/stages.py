"""The limit of the machine: each stage of cxr-edge's work alone, at full use of the cores.

Run as a child process by ``run_all.py`` (``python benchmarks/stages.py --model M --files LIST``);
prints one JSON object. Measures, on the same files as the end-to-end run:

* decode: ``cxr_edge.preprocess.load_image`` with the model's contract (draft mode,
  grayscale, bilinear squash), with 1 and n threads and with n processes;
* classify: :meth:`cxr_edge.engine.Classifier.run` on each file's decoded pixels, one film per
  call as the engine does: the bundle's real work per film (one invoke per test-time view it
  runs on that film, the views' resampling, the gate and the head), with interpreter threads
  1 and n and with n processes of one single-threaded classifier each;
* one image alone: decode + classify of a single image in a warm process (the latency a
  user sees for one image, start-up aside);
* where one film's time goes: decode, each view's resampling and invoke, and the rest of
  ``Classifier.run`` (gate, head, decision), medians over the latency files, one thread.

Each variant is timed after a warm-up and reported raw (images, seconds, CPU seconds), so
``run_all.py`` can pool the rounds; the best variant per core count is what the machine
can do (``summary.pipeline_limit`` says how the two stages combine).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from cxr_edge import preprocess, runtime
from cxr_edge.bundle import load_bundle
from cxr_edge.discover import Found
from cxr_edge.engine import Classifier
from cxr_edge.preprocess import Contract, Prepared, load_image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import read_list  # noqa: E402  (a sibling script, not a package)

WARMUP = 8  # images decoded or classified before timing


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


def _init_classifier(bundle_path: str, films: list[Prepared]) -> None:
    _STATE["classifier"] = Classifier(load_bundle(bundle_path), threads=1)
    _STATE["films"] = films
    classify_all(_STATE["classifier"], films[:WARMUP])


def _classify_slice(indices: range) -> int:
    films = _STATE["films"]
    classify_all(_STATE["classifier"], [films[i] for i in indices])
    return len(indices)


def classify_all(classifier: Classifier, films: list[Prepared]) -> None:
    """What the engine does with each decoded film: ``Classifier.run``, one film per call."""
    for i, film in enumerate(films):
        classifier.run(Found(str(i), str(i)), film)


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


def classify_threads(bundle_path: str, films: list[Prepared], threads: int) -> dict[str, Any]:
    """Classify every decoded film with one classifier of ``threads`` interpreter threads."""
    classifier = Classifier(load_bundle(bundle_path), threads=threads)
    classify_all(classifier, films[:WARMUP])
    return timed(len(films), lambda: classify_all(classifier, films))


def classify_processes(bundle_path: str, films: list[Prepared], processes: int) -> dict[str, Any]:
    """Each of ``processes`` single-threaded classifiers takes every ``processes``-th film."""
    with _pool(processes, _init_classifier, (bundle_path, films)) as pool:
        return timed(len(films), lambda: pool.map(_classify_slice, [range(i, len(films), processes)
                                                                    for i in range(processes)]), cpu=False)


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


def _ms(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return 1000 * (time.perf_counter() - start)


def where_time_goes(files: list[str], bundle_path: str) -> dict[str, float]:
    """Median ms per film, one thread: decode, each view's resampling and invoke, and the whole of
    ``Classifier.run`` (whose rest, beyond the invokes it made, is the gate, the head and the decision)."""
    classifier = Classifier(load_bundle(bundle_path), threads=1)
    bundle = classifier.bundle
    parts: dict[str, list[float]] = {"decode": []}
    for f in files:
        parts["decode"].append(_ms(lambda: load_image(f, bundle.contract)))
        film = load_image(f, bundle.contract)
        for name in bundle.views:
            batch = film.pixels[None]
            if name != "film":
                parts.setdefault(f"resample {name}", []).append(_ms(lambda: preprocess.view(name, batch)))
            pixels = preprocess.view(name, batch)
            parts.setdefault(f"invoke {name}", []).append(_ms(lambda: runtime.run_outputs(classifier.interpreter,
                                                                                          pixels)))
        parts.setdefault("classify (Classifier.run)", []).append(_ms(lambda: classifier.run(Found(f, f), film)))
    return {name: statistics.median(times) for name, times in parts.items()}


def measure(bundle_path: str, files: list[str], cores: int, latency_files: int) -> dict[str, Any]:
    """Every variant of each stage on ``files``: {stage: {"threads"|"processes": {cores: timing}}}."""
    bundle = load_bundle(bundle_path)
    contract = bundle.contract
    counts = sorted({1, cores})  # one thread: the cheapest CPU per image; all cores: the rate
    films = [load_image(f, contract) for f in files]
    decode = {"threads": {c: decode_threads(files, contract, c) for c in counts}}
    classify = {"threads": {c: classify_threads(bundle_path, films, c) for c in counts}}
    if cores > 1:
        decode["processes"] = {cores: decode_processes(files, contract, cores)}
        classify["processes"] = {cores: classify_processes(bundle_path, films, cores)}
    return {
        "files": len(files),
        "cores": cores,
        "views": list(bundle.views),
        "decode": decode,
        "classify": classify,
        "one_image_s": one_image_alone(files[:latency_files], bundle_path, cores),
        "per_film_ms": where_time_goes(files[:latency_files], bundle_path),
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
