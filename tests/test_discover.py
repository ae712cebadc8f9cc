"""Discovery: which files a folder yields, in which order, and how the report names them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cxr_edge.discover import discover

SCANS = Path("scans")  # a folder as typed on the command line, relative to the working folder


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def displays(*paths: Path, recursive: bool = True) -> list[str]:
    return [found.display for found in discover(paths, recursive=recursive)]


def test_walks_recursively_sorted_and_keeps_only_image_extensions_in_any_case(tmp_path: Path) -> None:
    touch(SCANS, "b.png", "a.JPG", "c.Jpeg", "notes.txt", "report.csv", "sub/z.bmp", "sub/deeper/y.TIFF", "d.tif")
    assert displays(SCANS) == [
        "scans/a.JPG", "scans/b.png", "scans/c.Jpeg", "scans/d.tif", "scans/sub/deeper/y.TIFF", "scans/sub/z.bmp"
    ]


def test_found_paths_point_at_the_files(tmp_path: Path) -> None:
    touch(tmp_path, "sub/a.png")
    [found] = discover([tmp_path])
    assert Path(found.path) == tmp_path / "sub" / "a.png"


def test_hidden_files_and_folders_are_skipped(tmp_path: Path) -> None:
    touch(SCANS, ".hidden.png", ".thumbs/a.png", "ok/.b.jpg", "ok/c.jpg")
    assert displays(SCANS) == ["scans/ok/c.jpg"]


def test_no_recursive_stays_in_the_folder(tmp_path: Path) -> None:
    touch(SCANS, "a.png", "sub/b.png")
    assert displays(SCANS, recursive=False) == ["scans/a.png"]


def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    touch(SCANS, "a/x.png")
    (SCANS / "a" / "loop").symlink_to(tmp_path / SCANS, target_is_directory=True)
    (SCANS / "a" / "self").symlink_to(tmp_path / SCANS / "a", target_is_directory=True)
    assert displays(SCANS) == ["scans/a/x.png"]


def test_symlinked_folder_elsewhere_is_followed(tmp_path: Path) -> None:
    touch(tmp_path / "elsewhere", "x.png")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert displays(tmp_path / "root") == [f"{tmp_path.as_posix()}/root/linked/x.png"]


def test_a_single_file_is_taken_whatever_its_extension(tmp_path: Path) -> None:
    touch(tmp_path, "scan.dat")
    assert displays(tmp_path / "scan.dat") == [(tmp_path / "scan.dat").as_posix()]


def test_several_paths_keep_their_order_and_their_roots_apart(tmp_path: Path) -> None:
    touch(tmp_path, "b/x.png", "a/x.png", "c.png")
    assert displays(Path("b"), Path("a"), Path("c.png")) == ["b/x.png", "a/x.png", "c.png"]


def test_one_folder_alone_is_named_as_given_so_two_folders_never_share_a_name(tmp_path: Path) -> None:
    touch(tmp_path, "day1/IM-0001.jpeg", "day2/IM-0001.jpeg")
    assert displays(Path("day1")) == ["day1/IM-0001.jpeg"]
    assert displays(Path("day2")) == ["day2/IM-0001.jpeg"]


def test_a_file_reached_through_overlapping_paths_is_listed_once_where_first_met(tmp_path: Path) -> None:
    touch(tmp_path, "day2/IM-0001.jpeg", "day2/IM-0002.jpeg")
    assert displays(Path("day2"), Path("day2/IM-0001.jpeg"), Path("./day2")) == [
        "day2/IM-0001.jpeg", "day2/IM-0002.jpeg"
    ]
    assert displays(Path("day2/IM-0002.jpeg"), Path("day2")) == ["day2/IM-0002.jpeg", "day2/IM-0001.jpeg"]


def test_a_symlink_to_a_file_is_an_input_of_its_own(tmp_path: Path) -> None:
    touch(tmp_path, "day2/IM-0001.jpeg")
    (tmp_path / "link.jpeg").symlink_to(tmp_path / "day2" / "IM-0001.jpeg")
    assert displays(Path("day2"), Path("link.jpeg")) == ["day2/IM-0001.jpeg", "link.jpeg"]


def test_a_folder_named_like_an_image_is_listed_and_walked(tmp_path: Path) -> None:
    touch(SCANS, "x.jpg/inner.png")
    assert displays(SCANS) == ["scans/x.jpg", "scans/x.jpg/inner.png"]


def test_extensionless_dicom_is_recognised_by_its_magic(tmp_path: Path) -> None:
    touch(SCANS, "README")
    (SCANS / "IM0001").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    assert displays(SCANS) == ["scans/IM0001"]


def test_dicom_named_by_its_uid_is_recognised_by_its_magic(tmp_path: Path) -> None:
    touch(SCANS, "series.1.2.3")
    (SCANS / "1.2.840.113619.2.55.3.320").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 16)
    assert displays(SCANS) == ["scans/1.2.840.113619.2.55.3.320"]


def test_undecodable_file_names_become_valid_utf8(tmp_path: Path) -> None:
    name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes on a UTF-8 system
    try:
        (tmp_path / name).write_bytes(b"x")
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system refuses undecodable names")
    [display] = displays(tmp_path)
    assert display == f"{tmp_path.as_posix()}/caf\\xe9.png"
    display.encode("utf-8")


def test_a_folder_that_cannot_be_listed_is_an_input_with_its_error(unlistable) -> None:
    touch(SCANS, "a.png", "locked/b.png", "z.png")
    unlistable(SCANS / "locked")
    found = list(discover([SCANS]))
    assert [(f.display, f.error) for f in found] == [
        ("scans/a.png", ""),
        ("scans/locked/", "cannot list this folder: Permission denied"),
        ("scans/z.png", ""),
    ]


def test_discovery_is_lazy(tmp_path: Path) -> None:
    touch(SCANS, "a.png", "b.png")
    found = discover([SCANS])
    assert next(found).display == "scans/a.png"
