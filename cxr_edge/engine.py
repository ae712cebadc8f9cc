"""The engine: inputs in, results out in input order, with bounded memory.

Decoding (Pillow releases the GIL) runs in a pool of worker threads. On the CPU with
automatic threading each worker also runs its own single-threaded copy of the interpreter
(invoke releases the GIL too), so every core decodes and infers; with ``--threads N`` or
on an Edge TPU (one device, one interpreter) the main thread feeds the one interpreter. At
most ``2 * workers`` decodes are in flight, so memory is the same for 10 or 100,000
files (``benchmarks/``: peak RSS 60-86 MiB for 100 to 10,000 files, see
``docs/performance.md``). It knows nothing of CSV.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from cxr_edge import decision, preprocess, runtime
from cxr_edge.bundle import Bundle, BundleError, verify_edgetpu_file
from cxr_edge.decision import Decided
from cxr_edge.discover import Found
from cxr_edge.gate import Verdict
from cxr_edge.preprocess import ImageReadError, Prepared, load_image

OK = "ok"
ERROR = "error"
REJECTED = "rejected"  # read, but the bundle's gate says it is not an upright frontal chest film


def default_workers() -> int:
    """Decode threads: one per core, capped at 4 (more only adds memory on a Pi)."""
    return max(1, min(4, os.cpu_count() or 1))


def default_threads() -> int:
    """Interpreter threads: one per core."""
    return max(1, os.cpu_count() or 1)


@dataclasses.dataclass
class Result:
    """What became of one input; ``status`` is ``ok``, ``error`` or ``rejected`` (then ``error`` says why)."""

    path: str
    display: str
    status: str
    error: str = ""
    prediction: str = ""
    probability: float | None = None  # P(not the negative label): compared with the threshold
    label_probs: tuple[float, ...] = ()  # one per manifest label, in label order
    score: float | None = None  # the probability before the output's 8-bit rounding: orders, never decides
    width: int | None = None
    height: int | None = None
    info: dict[str, str] = dataclasses.field(default_factory=dict)


#: How the summary names the inputs of a status other than ``ok``: none of them was screened.
NOT_SCREENED_WORDS = {ERROR: "unreadable", REJECTED: "rejected (not an upright frontal chest film)"}
#: Reasons the summary names one by one, most frequent first; the rest are counted together.
REASONS_SHOWN = 3
#: How a row screened with ``--screen-all`` that the gate would reject begins its warning (the
#: report's ``note``), so that the summary counts them in a report read back too.
SCREENED_ANYWAY = "SCREENED WITH --screen-all"


def _reason_kind(result: Result) -> str:
    """The reason without its measurements, so the summary groups "rotate it upright" films together."""
    return result.error.split(" (")[0].removeprefix("not screened: ") if result.status == REJECTED else result.error


@dataclasses.dataclass
class Tally:
    """Counts for the final summary: labels of the screened inputs, reasons of the others."""

    labels: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    not_screened: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # (status, reason)
    overridden: int = 0  # classified only because --screen-all overrode the gate
    skipped: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)
    seconds: float | None = None  # set by stop(): the classifying alone, without the page after it

    def add(self, result: Result) -> None:
        if result.status == OK:
            self.labels[result.prediction] += 1
            self.overridden += gate_overridden(result)
        else:
            self.not_screened[result.status, _reason_kind(result)] += 1

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.started

    @property
    def errors(self) -> int:
        """Inputs not screened, whatever the reason."""
        return sum(self.not_screened.values())

    @property
    def classified(self) -> int:
        return sum(self.labels.values())

    @property
    def inputs(self) -> int:
        """Every input discovered: classified, unreadable, rejected or already in the report."""
        return self.classified + self.errors + self.skipped

    def counts(self) -> str:
        """``5 classified (NORMAL 3, PNEUMONIA 2); 7 unreadable: pydicom not installed (7)``; with
        ``--screen-all``, how many of the classified the gate would have rejected."""
        per_label = ", ".join(f"{label} {n}" for label, n in sorted(self.labels.items())) or "none"
        statuses = sorted({status for status, _ in self.not_screened}) or [ERROR]
        overridden = ([f"{self.overridden} of them screened only because of --screen-all: the gate would have "
                       "rejected them (each row's note says why)"] if self.overridden else [])
        return "; ".join([f"{self.classified} classified ({per_label})", *overridden,
                          *map(self._not_screened, statuses)])

    def _not_screened(self, status: str) -> str:
        reasons = collections.Counter({why: n for (s, why), n in self.not_screened.items() if s == status})
        named = [f"{why or 'no reason given'} ({n})" for why, n in reasons.most_common(REASONS_SHOWN)]
        rest = sum(reasons.values()) - sum(n for _, n in reasons.most_common(REASONS_SHOWN))
        named += [f"{rest} for other reasons"] if rest else []
        head = f"{sum(reasons.values())} {NOT_SCREENED_WORDS.get(status, status)}"
        return f"{head}: {', '.join(named)}" if named else head

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started if self.seconds is None else self.seconds
        done = self.classified + self.errors
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [self.counts()]
        if self.skipped:
            parts.append(f"{self.skipped} already in the report")
        return f"{'; '.join(parts)}; {elapsed:.1f} s, {rate:.1f} images/s"


class Classifier:
    """A bundle and its interpreter: decoded images -> labelled results."""

    def __init__(self, bundle: Bundle, threads: int | None = None, edgetpu: bool = False,
                 screen_all: bool = False):
        self.bundle = bundle
        self.threads = threads
        self.edgetpu = edgetpu
        self.screen_all = screen_all  # screen what the gate rejects too (research), noting it on the row
        self.views_run = 0  # films whose other test-time views were invoked (with a cascade, those in its band)
        model_path = bundle.model_path
        if edgetpu:
            model_path = bundle.edgetpu_model_path
            if model_path is None or not model_path.is_file():
                raise runtime.RuntimeUnavailable(
                    f"{bundle.manifest_path}: this bundle has no Edge-TPU-compiled model (the runtime is not "
                    f"the problem): compile {bundle.model_path.name} with edgetpu_compiler on an x86-64 Linux "
                    "machine and name the result in the manifest's edgetpu_model_file (docs/conversion.md, "
                    "'Edge TPU'), or run on the CPU with --device cpu"
                )
            verify_edgetpu_file(bundle)
        with _without_native_info_lines():
            self.interpreter = runtime.make_interpreter(model_path, threads=threads, edgetpu=edgetpu)
        _check_input(bundle, model_path, runtime.input_details(self.interpreter))

    @property
    def per_worker(self) -> bool:
        """Whether :func:`classify` gives each decode worker its own copy.

        Automatic threading on the CPU only. Measured with the 2.1.0 model on a 2-core
        x86 host: 98-104 images/s against 86-91 for one two-threaded interpreter, which
        could not keep both cores busy while decoding competed for them.
        """
        return self.threads is None and not self.edgetpu

    def replica(self) -> "Classifier":
        """A single-threaded copy for one worker thread (interpreters are not thread-safe)."""
        return Classifier(self.bundle, threads=1, screen_all=self.screen_all)

    def _per_view(self, batch: np.ndarray, views: Sequence[str] | None = None) -> list[list[np.ndarray]]:
        """Every output of one invoke per test-time view of a uint8 batch (N, H, W), the film's first
        (``views``: the bundle's unless named)."""
        return [runtime.run_outputs(self.interpreter, preprocess.view(name, batch))
                for name in views or self.bundle.views]

    def _features(self, views: list[list[np.ndarray]]) -> list[np.ndarray] | None:
        index = self.bundle.features_output
        return None if index is None else [outputs[index] for outputs in views]

    def features(self, batch: np.ndarray, views: Sequence[str] | None = None) -> list[np.ndarray] | None:
        """The features output (N, D) of a uint8 batch (N, H, W) per test-time view (the bundle's, or
        ``views``: occlusion reads the film's alone), the film's first (None when the model has none):
        the one place that reads it, for the gate, the head and their fitting."""
        return self._features(self._per_view(batch, views))

    def _decided(self, rule: decision.Rule, views: list[list[np.ndarray]]) -> Decided:
        head, features = self.bundle.head, self._features(views)
        head_outputs = None if head is None or features is None else [head.outputs(f) for f in features]
        return decision.decide(rule, [outputs[0] for outputs in views], head_outputs)

    def _film_first(self, batch: np.ndarray) -> tuple[list[list[np.ndarray]], Decided]:
        """The film view's outputs, and the rule's decision of the batch: with a cascade, the other views are
        invoked only on the films whose film-view probability lies in its band (:class:`decision.Cascade`)."""
        rule = self.bundle.rule
        if rule.cascade is None:
            views = self._per_view(batch)
            self.views_run += len(batch) if len(rule.views) > 1 else 0
            return views[:1], self._decided(rule, views)
        film = self._per_view(batch, rule.views[:1])
        first = self._decided(rule.film_rule, film)
        needed = rule.cascade.needs_views(first.probability, rule.threshold)
        if not needed.any():
            return film, first
        self.views_run += int(needed.sum())
        views = [[out[needed] for out in film[0]], *self._per_view(batch[needed], rule.views[1:])]
        return film, decision.cascaded(first, self._decided(rule, views), needed)

    def decide(self, batch: np.ndarray) -> tuple[Decided, list[Verdict] | None]:
        """What the bundle's rule makes of a uint8 batch (N, H, W), and the gate's verdicts (None without
        a gate): one invoke per test-time view gives both (with a cascade, the film's alone where the
        others cannot change the decision); the gate reads the film's own features, as it was fitted."""
        film, decided = self._film_first(batch)
        features = self._features(film)
        verdicts = self.bundle.gate.check(features[0]) if self.bundle.gate is not None and features else None
        return decided, verdicts

    def positive_scores(self, batch: np.ndarray) -> np.ndarray:
        """P(not the negative label) (N,) of a uint8 batch (N, H, W), by the bundle's rule, without the gate."""
        return self._film_first(batch)[1].probability

    def run(self, found: Found, prepared: Prepared) -> Result:
        """Classify one decoded image.

        One image per invoke: batches of 4 or 8 were no faster on the CPU (decoding is the
        bottleneck) and would change the model's batch size, which not every model allows.
        """
        decided, verdicts = self.decide(prepared.pixels[None])
        info = dict(prepared.info)
        verdict = verdicts[0] if verdicts else None
        if verdict is not None and not verdict.passed:
            if not self.screen_all:
                return Result(found.path, found.display, REJECTED, error=verdict.reason, width=prepared.width,
                              height=prepared.height, info=info)
            info["warning"] = "; ".join(filter(None, [info.get("warning"), screened_anyway(verdict)]))
        return Result(
            path=found.path,
            display=found.display,
            status=OK,
            prediction=decided.labels[0],
            probability=float(decided.probability[0]),
            label_probs=tuple(float(p) for p in decided.label_probs[0]),
            score=None if decided.score is None else float(decided.score[0]),
            width=prepared.width,
            height=prepared.height,
            info=info,
        )


def screened_anyway(verdict: Verdict) -> str:
    """The row's warning when ``--screen-all`` screened what the gate would have rejected."""
    return f"{SCREENED_ANYWAY}, the gate would reject it: {verdict.reason.removeprefix('not screened: ')}"


def gate_overridden(result: Result) -> bool:
    """Whether ``--screen-all`` screened this film against the gate (said in its warning, or in the
    ``note`` of a report row read back)."""
    return any(SCREENED_ANYWAY in result.info.get(key, "") for key in ("warning", "note"))


@contextlib.contextmanager
def _without_native_info_lines() -> Iterator[None]:
    """Drop the TFLite runtime's "INFO: Created ... delegate" lines; pass its other output on.

    The C++ runtime writes straight to file descriptor 2, out of Python's reach, and no
    environment variable silences LiteRT's INFO lines, so they are caught on the descriptor.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. embedded): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True) if not line.startswith(b"INFO: ")]
            if kept:
                os.write(2, b"".join(kept))


def _check_input(bundle: Bundle, model_path: Path, details: dict[str, Any]) -> None:
    """Refuse a model whose input tensor is not what its manifest promises."""
    shape = tuple(int(n) for n in details["shape"])
    dtype = np.dtype(details["dtype"]).name
    if shape[1:] != bundle.input_shape[1:] or dtype != bundle.input_dtype:
        raise BundleError(
            f"{model_path}: input {list(shape)} {dtype} does not match the manifest's "
            f"{list(bundle.input_shape)} {bundle.input_dtype} ({bundle.manifest_path.name})"
        )


def read(found: Found, bundle: Bundle) -> Prepared:
    """Decode one input; a folder discovery could not list fails like an unreadable file."""
    if found.error:
        raise ImageReadError(found.error)
    return load_image(found.path, bundle.contract)


def _decode(found: Found, bundle: Bundle) -> Prepared | Result:
    try:
        return read(found, bundle)
    except ImageReadError as exc:
        return Result(found.path, found.display, ERROR, error=str(exc))
    except MemoryError:
        return Result(found.path, found.display, ERROR, error="not enough memory to decode this image")


def classify_files(
    inputs: Iterable[Found], classifier: Classifier, workers: int | None = None
) -> Iterator[Result]:
    """Yield one :class:`Result` per input file, in input order, streaming: the engine of ``cxr-edge classify``
    and ``cxr-edge evaluate`` (named apart from the :mod:`cxr_edge.classify` module, which writes the report)."""
    workers = workers or default_workers()
    window = 2 * workers  # decodes in flight: enough to keep every worker busy
    inputs = iter(inputs)
    job = _worker_job(classifier)
    decoding: collections.deque[tuple[Found, Future[Prepared | Result]]] = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:

        def refill() -> None:
            while len(decoding) < window:
                found = next(inputs, None)
                if found is None:
                    return
                decoding.append((found, pool.submit(job, found)))

        refill()
        while decoding:
            found, future = decoding.popleft()
            refill()
            decoded = future.result()
            yield decoded if isinstance(decoded, Result) else classifier.run(found, decoded)


def _worker_job(classifier: Classifier) -> Callable[[Found], Prepared | Result]:
    """What a worker does with one input: decode, and classify too when it has its own copy.

    A worker makes its copy on its first image, so a short run makes only the copies it
    uses; one at a time, because making an interpreter briefly redirects file descriptor
    2 (see :func:`_without_native_info_lines`).
    """
    if not classifier.per_worker:
        return lambda found: _decode(found, classifier.bundle)
    making = threading.Lock()
    mine = threading.local()

    def job(found: Found) -> Prepared | Result:
        decoded = _decode(found, classifier.bundle)
        if isinstance(decoded, Result):
            return decoded
        if not hasattr(mine, "classifier"):
            with making:
                mine.classifier = classifier.replica()
        return mine.classifier.run(found, decoded)

    return job

