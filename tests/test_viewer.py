"""Screenshots of a viewer: the cues that a rejected picture is a film on a screen, on generated pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cxr_edge import viewer
from cxr_edge.engine import OK, REJECTED, Result
from cxr_edge.gate import NOT_A_CHEST_FILM
from cxr_edge.testing.synthetic import synthetic_xray

GATE = f"not screened: {NOT_A_CHEST_FILM}; its features lie at distance 706 from the training films' (cut-off 311)"


def film(size: tuple[int, int] = (900, 1000)) -> Image.Image:
    return synthetic_xray(3, size, lesion=True).convert("L")


def on_screen(screen: tuple[int, int], overlays: bool, background: int = 18) -> Image.Image:
    """A viewer's screenshot: the film in the middle of a uniform background, with a coloured title bar
    and yellow window/level text when ``overlays``."""
    shot = Image.new("RGB", screen, (background,) * 3)
    picture = film((int(screen[1] * 0.8), int(screen[1] * 0.9)))
    shot.paste(picture.convert("RGB"), ((screen[0] - picture.width) // 2, screen[1] // 20))
    if overlays:
        draw = ImageDraw.Draw(shot)
        draw.rectangle([0, 0, screen[0], screen[1] // 25], fill=(40, 70, 140))
        draw.text((screen[0] // 3, screen[1] // 12), "W:2000 L:500  R", fill=(255, 255, 0))
    return shot


def photo() -> Image.Image:
    """A colour photo: colour almost everywhere."""
    y, x = np.mgrid[0:600, 0:800]
    return Image.fromarray(np.stack([x * 255 // 800, y * 255 // 600, 255 - x * 255 // 800], axis=2).astype(np.uint8))


def saved(image: Image.Image, path: Path) -> str:
    image.save(path)
    return str(path)


@pytest.mark.parametrize("screen", [(1920, 1080), (1366, 768)])
def test_a_grey_film_with_coloured_viewer_marks_is_a_screenshot(tmp_path, screen) -> None:
    assert viewer.cue(saved(on_screen(screen, overlays=True), tmp_path / "shot.png")) == \
        "coloured marks on a grey picture"


def test_a_screen_sized_grey_picture_with_wide_borders_is_a_screenshot(tmp_path) -> None:
    path = saved(on_screen((1920, 1080), overlays=False).convert("L"), tmp_path / "shot.png")
    assert viewer.cue(path) == "a 1920x1080 screen with wide uniform borders"
    assert viewer.cue(saved(on_screen((1920, 1080), overlays=False), tmp_path / "shot.jpg")) != ""  # JPEG, RGB


@pytest.mark.parametrize("make", [
    lambda: film(),  # a film, grey
    lambda: film().convert("RGB"),  # a film saved as RGB: no colour at all
    lambda: film((1920, 1080)),  # a film at a screen's size, edge to edge: no borders
    lambda: on_screen((1000, 1000), overlays=False),  # borders, but no screen's size
    lambda: photo(),
], ids=["grey film", "rgb film", "screen-sized film", "bordered film", "photo"])
def test_films_and_photos_are_not_screenshots(tmp_path, make) -> None:
    assert viewer.cue(saved(make(), tmp_path / "picture.png")) == ""


def test_an_unreadable_picture_has_no_cue(tmp_path) -> None:
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n")
    assert viewer.cue(str(tmp_path / "cut.png")) == ""


def test_a_rejected_screenshot_says_to_export_the_film_first_and_keeps_what_the_gate_measured(tmp_path) -> None:
    path = saved(on_screen((1920, 1080), overlays=True), tmp_path / "shot.png")
    hinted = viewer.hinted(Result(path, "shot.png", REJECTED, error=GATE))
    assert hinted.error.startswith("not screened: looks like a screenshot of an image viewer (coloured marks on "
                                   "a grey picture): if it is a chest film, export the film itself")
    assert hinted.error.endswith(GATE.removeprefix("not screened: "))
    rejected_film = Result(saved(film(), tmp_path / "film.png"), "film.png", REJECTED, error=GATE)
    assert viewer.hinted(rejected_film) == rejected_film
    screened = Result(path, "shot.png", OK, prediction="NORMAL", probability=0.1)
    assert viewer.hinted(screened) == screened  # only rejected pictures are looked at
