"""Occlusion-sensitivity heatmaps: where the model looked, with the TFLite interpreter alone.

Grad-CAM needs gradients, which a TFLite interpreter does not have. Occlusion needs only
forward passes: hide one square of the image at a time (filled with the image's mean
grey), run the occluded copies through the interpreter in batches, and record how much
the model's evidence for pneumonia drops (:func:`evidence`: the log-odds of its score, from
the float head, which no 8-bit output step rounds and no ceiling stops). A pixel's heat is
the mean drop over the squares that cover it, so red marks what the model needs to call the
image positive. With the default 32-pixel window and 16-pixel stride a 224x224 model input
takes 170 forward passes (13 x 13 occluded copies and the image itself).

An image the model's gate rejects gets no heatmap, as it gets no row in ``classify``: a map of
a hand would read as a finding (``screen_all`` draws it anyway, saying so).

The overlay is drawn with Pillow and a small colormap in numpy; matplotlib is not needed.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from cxr_edge.bundle import Bundle
from cxr_edge.discover import Found
from cxr_edge.engine import ERROR, OK, Classifier, read
from cxr_edge.preprocess import ImageReadError

WINDOW = 32
STRIDE = 16
BATCH = 16
#: Full colour means this drop in evidence (log-odds; 0.5 divides the odds by 1.65), unless the largest
#: drop is bigger: an image the model finds nothing in stays grey.
MIN_SCALE = 0.5
OVERLAY_ALPHA = 0.6
#: A largest drop below this leaves the overlay blank (the odds fall by less than a tenth).
FLAT_DROP = 0.1
#: Why an overlay is blank; true at any probability and any threshold.
FLAT = ("no hidden region lowers the evidence by 0.1 or more: it is spread out or redundant")
#: Without a head, the evidence is the log-odds of the model's own probability, this far inside 0 and 1
#: (half an 8-bit output step): an output of exactly 0 or 1 has no finite log-odds.
CLIP = 1 / 512
DEJAVU = "DejaVuSans.ttf"
SYSTEM_FONTS = (Path("/usr/share/fonts/truetype/dejavu") / DEJAVU, Path("/usr/share/fonts/TTF") / DEJAVU)
#: Anchor colours of the heat colormap, cold to hot (black-purple-red-yellow, like "inferno").
_ANCHORS = np.array(
    [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float32
)


@dataclasses.dataclass
class Heatmap:
    """An occlusion map of one image: ``drop[y, x]`` in evidence (log-odds, :func:`evidence`; may be negative)."""

    pixels: np.ndarray  # the model input, uint8 (H, W)
    probability: float  # the unoccluded P(not negative label), as classify gives it
    drop: np.ndarray  # float32 (H, W)
    seconds: float
    passes: int

    @property
    def scale(self) -> float:
        return max(float(self.drop.max()), MIN_SCALE)

    @property
    def level(self) -> np.ndarray:
        """Colour strength 0..1: the positive drops relative to :attr:`scale`."""
        return np.clip(self.drop / self.scale, 0.0, 1.0)

    @property
    def flat_note(self) -> str:
        """Why the overlay is blank, or "" when it is not: a grey overlay must not read as "nothing found"."""
        return "" if float(self.drop.max()) >= FLAT_DROP else FLAT

    def caption(self, title: str, score_name: str) -> list[str]:
        lines = [
            title,
            f"{score_name} {self.probability:.3f}; colour = drop in the model's evidence (log-odds) when the "
            f"area is hidden (full colour = {self.scale:.2f})",
        ]
        note = self.flat_note
        return [*lines, note] if note else lines


def evidence(classifier: Classifier, batch: np.ndarray) -> np.ndarray:
    """What occlusion measures on each film of a uint8 batch (N, H, W): the log-odds of the positive
    score, log(s / (1 - s)), from the model's float head on the film's own features.

    Unlike the probability it does not saturate: a film at the 8-bit output's top (255/256), where
    hiding its lesion rarely moves the probability by a step, still loses evidence. The soft
    test-time views are left out, which halves the cost: on 26 real flagged films the maps of the
    film view correlated 0.973 (median) with those of every view (``benchmarks/heatmap_cost.py``).
    Without a head (bundles older than the gate), the log-odds of the model's own probability,
    clipped :data:`CLIP` inside 0 and 1.
    """
    features = classifier.features(batch, views=("film",)) if classifier.bundle.head is not None else None
    if features is None:
        score = np.clip(classifier.positive_scores(batch).astype(np.float64), CLIP, 1 - CLIP)
        return np.log(score / (1 - score))
    return log_odds(classifier.bundle, features[0])


def log_odds(bundle: Bundle, features: np.ndarray) -> np.ndarray:
    """log(s / (1 - s)) of the head's positive score s for features (N, D), from the logits: no
    rounding to a float's last digits either (s = 1 - 1e-9 still differs from s = 1 - 1e-12)."""
    logits = bundle.head.logits(features)
    if logits.shape[1] == 1:  # one sigmoid column: P(labels[1]) = softmax([0, logit])[1]
        logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
    negative = bundle.rule.negative_index
    return np.logaddexp.reduce(np.delete(logits, negative, axis=1), axis=1) - logits[:, negative]


def positions(size: int, window: int, stride: int) -> list[int]:
    """Window offsets along one side: every ``stride`` pixels, the last one flush with the edge."""
    if window > size:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    return starts if starts[-1] == size - window else [*starts, size - window]


def occlusion_map(
    classifier: Classifier,
    pixels: np.ndarray,
    window: int = WINDOW,
    stride: int = STRIDE,
    batch: int = BATCH,
    measure: Callable[[Classifier, np.ndarray], np.ndarray] = evidence,
) -> Heatmap:
    """The occlusion heatmap of one model-size uint8 image (H, W): the drop in ``measure`` (:func:`evidence`;
    ``benchmarks/heatmap_cost.py`` compares others) when each square is hidden."""
    if window < 1 or stride < 1 or batch < 1:
        raise ValueError("window, stride and batch must be positive")
    started = time.perf_counter()
    height, width = pixels.shape
    fill = np.uint8(round(float(pixels.mean())))
    boxes = [(y, x) for y in positions(height, window, stride) for x in positions(width, window, stride)]
    probability = float(classifier.positive_scores(pixels[None])[0])
    base = float(measure(classifier, pixels[None])[0])
    total = np.zeros(pixels.shape, np.float64)
    covered = np.zeros(pixels.shape, np.int32)
    for first in range(0, len(boxes), batch):
        chunk = boxes[first : first + batch]
        copies = np.repeat(pixels[None], len(chunk), axis=0)
        for copy, (y, x) in zip(copies, chunk):
            copy[y : y + window, x : x + window] = fill
        for (y, x), score in zip(chunk, measure(classifier, copies)):
            total[y : y + window, x : x + window] += base - float(score)
            covered[y : y + window, x : x + window] += 1
    drop = (total / np.maximum(covered, 1)).astype(np.float32)
    return Heatmap(pixels, probability, drop, time.perf_counter() - started, len(boxes) + 1)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> RGB uint8 (..., 3) along the anchor colours."""
    v = np.clip(values, 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(v.astype(int), len(_ANCHORS) - 2)
    frac = (v - low)[..., None]
    return np.rint(_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac).astype(np.uint8)


def overlay(pixels: np.ndarray, level: np.ndarray) -> Image.Image:
    """The uint8 X-ray (H, W) in grey with ``level`` (0..1, same shape) blended in colour."""
    grey = np.repeat(pixels[..., None].astype(np.float32), 3, axis=2)
    alpha = (OVERLAY_ALPHA * np.clip(level, 0.0, 1.0))[..., None]
    blended = grey * (1 - alpha) + colormap(level).astype(np.float32) * alpha
    return Image.fromarray(np.rint(blended).astype(np.uint8), mode="RGB")


def caption_font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (matplotlib's bundled copy, else the system's) for captions: Pillow's default
    font shows boxes for non-Latin file names. matplotlib is found, not imported (slow to load)."""
    spec = importlib.util.find_spec("matplotlib")
    bundled = [Path(spec.origin).parent / "mpl-data/fonts/ttf" / DEJAVU] if spec and spec.origin else []
    for path in [*bundled, *SYSTEM_FONTS]:
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """``width`` x ``height`` scaled so that its longest side is ``longest``: a film's own
    proportions, which the model's square input squashed."""
    scale = longest / max(width, height, 1)
    return max(1, round(width * scale)), max(1, round(height * scale))


def colour_bar(width: int, height: int = 10) -> Image.Image:
    """The overlay's scale, from no drop (left) to full colour (right)."""
    ramp = colormap(np.linspace(0.0, 1.0, width))
    return Image.fromarray(np.repeat(ramp[None], height, axis=0), mode="RGB")


def figure(pixels: np.ndarray, level: np.ndarray, caption: Sequence[str], zoom: int = 2,
           film_size: tuple[int, int] | None = None) -> Image.Image:
    """Side by side: the X-ray and its overlay, enlarged to the film's own proportions
    (``film_size``, the original width and height), a colour bar, then the caption lines."""
    longest = zoom * max(pixels.shape)
    width, height = fit(*(film_size or pixels.shape[::-1]), longest)
    font = caption_font()
    line = 17
    canvas = Image.new("RGB", (2 * width + 8, height + 30 + line * len(caption) + 6), "white")
    canvas.paste(Image.fromarray(pixels).convert("RGB").resize((width, height), Image.Resampling.BILINEAR), (0, 0))
    canvas.paste(overlay(pixels, level).resize((width, height), Image.Resampling.BILINEAR), (width + 8, 0))
    draw = ImageDraw.Draw(canvas)
    canvas.paste(colour_bar(width // 2), (width + 8 + width // 4, height + 6))
    draw.text((width + 8 + width // 4 - 4, height + 4), "no drop", fill="black", font=font, anchor="ra")
    draw.text((width + 8 + 3 * width // 4 + 4, height + 4), "full colour", fill="black", font=font)
    for i, text in enumerate(caption):
        while len(text) > 4 and draw.textlength(text, font=font) > canvas.width - 8:
            text = "..." + text[4:]  # too long for the figure: keep the end (file name, numbers)
        draw.text((4, height + 28 + line * i), text, fill="black", font=font)
    return canvas


def output_name(display: str, kind: str = "occlusion") -> str:
    """A flat file name for an input's heatmap: ``a/b/x.jpeg`` -> ``a__b__x.occlusion.png``."""
    parts = PurePosixPath(Path(display).with_suffix("").as_posix()).parts
    return "__".join(p for p in parts if p not in ("/", ".", "..")) + f".{kind}.png"


def output_names(displays: Sequence[str], kind: str = "occlusion") -> list[str]:
    """Heatmap file names: ``x.occlusion.png`` from the file name alone when that is unique,
    else the flattened path (:func:`output_name`); names still shared (``x.png`` beside
    ``x.jpg``) are numbered, so no heatmap overwrites another."""
    short = [output_name(PurePosixPath(d).name, kind) for d in displays]
    unique = len(set(short)) == len(short)
    names = short if unique else [output_name(d, kind) for d in displays]
    tail = f".{kind}.png"
    taken: set[str] = set()
    numbered = []
    for name in names:
        candidate, count = name, 1
        while candidate in taken:
            count += 1
            candidate = f"{name[: -len(tail)]}-{count}{tail}"
        taken.add(candidate)
        numbered.append(candidate)
    return numbered


@dataclasses.dataclass
class Explained:
    """What became of one input of ``cxr-edge explain``: a written heatmap, or why not (``status``
    ``error`` or ``rejected`` as in ``classify``; ``error`` says why); ``warning`` when ``--screen-all``
    drew what the gate rejects."""

    display: str
    heatmap: Heatmap | None = None
    written: Path | None = None
    error: str = ""
    status: str = OK
    warning: str = ""


def explain_to_dir(
    inputs: Sequence[Found],
    classifier: Classifier,
    out_dir: str | Path,
    window: int = WINDOW,
    stride: int = STRIDE,
    batch: int = BATCH,
    progress: bool = False,
) -> Iterator[Explained]:
    """Write one heatmap figure per input into ``out_dir``, yielding each outcome as it is done.

    An input is screened as :meth:`Classifier.run` screens it for ``classify``: one the gate rejects
    gets no heatmap, with the same reason, unless the classifier screens all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = output_names([found.display for found in inputs])
    bar = tqdm(inputs, unit="img", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    for found, name in zip(bar, names):
        try:
            prepared = read(found, classifier.bundle)
        except ImageReadError as exc:
            yield Explained(found.display, error=str(exc), status=ERROR)
            continue
        screened = classifier.run(found, prepared)
        if screened.status != OK:
            yield Explained(found.display, error=screened.error, status=screened.status)
            continue
        pixels = prepared.pixels
        heat = occlusion_map(classifier, pixels, window=window, stride=stride, batch=batch)
        path = out / name
        caption = heat.caption(f"{found.display} ({classifier.bundle.short_id})", classifier.bundle.rule.score_name)
        warning = screened.info.get("warning", "")
        figure(pixels, heat.level, [*caption, warning] if warning else caption,
               film_size=(prepared.width, prepared.height)).save(path)
        yield Explained(found.display, heat, path, warning=warning)
