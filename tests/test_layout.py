"""Tests for jaxvad.data.layout: numeric frame order, malformed folders, scenes, discovery."""

from __future__ import annotations

import pathlib

import pytest

from jaxvad.data.errors import DataError
from jaxvad.data.layout import discover, list_frames, natural_key, scene_of


def _touch(folder: pathlib.Path, *names: str) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  for n in names:
    (folder / n).write_bytes(b"")
  return folder


def _raises_one_line(match: str, fn, *args):
  with pytest.raises(DataError, match=match) as info:
    fn(*args)
  assert "\n" not in str(info.value)
  return str(info.value)


def test_numeric_sort_mixed_padding(tmp_path):
  d = _touch(tmp_path / "v", "2.jpg", "00005.jpg", "001.jpg", "0000.jpg", "03.png", "4.jpg", "notes.txt")
  assert [p.name for p in list_frames(d)] == ["0000.jpg", "001.jpg", "2.jpg", "03.png", "4.jpg", "00005.jpg"]
  assert [p.name for p in list_frames(_touch(tmp_path / "w", *[f"{i}.jpg" for i in range(12)]))][-3:] == [
      "9.jpg", "10.jpg", "11.jpg"]


def test_one_based_and_long_padding(tmp_path):
  d = _touch(tmp_path / "v", "0001.tif", "0002.tif", "0003.tif")
  assert [p.name for p in list_frames(d)] == ["0001.tif", "0002.tif", "0003.tif"]


def test_gap_error(tmp_path):
  d = _touch(tmp_path / "03", "016.jpg", "017.jpg", "019.jpg", "000.jpg", *[f"{i:03d}.jpg" for i in range(1, 16)])
  msg = _raises_one_line(r"frame gap in .*03: 017\.jpg is followed by 019\.jpg \(018 missing\)", list_frames, d)
  assert str(d) in msg


def test_duplicate_error_padding(tmp_path):
  d = _touch(tmp_path / "v", "0.jpg", "1.jpg", "001.jpg")
  _raises_one_line(r"duplicate frame 1 in .*v: 001\.jpg and 1\.jpg", list_frames, d)


def test_duplicate_error_extension(tmp_path):
  d = _touch(tmp_path / "v", "1.jpg", "1.png", "2.jpg")
  _raises_one_line(r"duplicate frame 1 in .*: 1\.jpg and 1\.png", list_frames, d)


def test_missing_folder_error(tmp_path):
  _raises_one_line(r"frame folder not found: .*nope", list_frames, tmp_path / "nope")


def test_no_images_error(tmp_path):
  d = _touch(tmp_path / "v", "a.txt")
  _raises_one_line(r"no image frames .* in .*v", list_frames, d)


def test_stem_without_number_error(tmp_path):
  d = _touch(tmp_path / "v", "0.jpg", "cover.jpg")
  _raises_one_line(r"frame without a number in .*v: cover\.jpg", list_frames, d)


def test_bad_start_error(tmp_path):
  d = _touch(tmp_path / "v", "5.jpg", "6.jpg")
  _raises_one_line(r"starts at 5\.jpg", list_frames, d)


def test_scene_rules():
  assert scene_of("01", "dataset") == "0"
  assert scene_of("01_0014", "prefix") == "01"
  assert scene_of("Abuse001", "prefix") == "Abuse001"
  assert scene_of("Abuse001_x264", "video") == "Abuse001_x264"
  with pytest.raises(ValueError):
    scene_of("01", "camera")


def test_natural_key():
  assert sorted(["10", "2", "1"], key=natural_key) == ["1", "2", "10"]
  assert sorted(["01_010", "01_002", "b", "a"], key=natural_key) == ["01_002", "01_010", "a", "b"]


def test_discover_frames(tmp_path):
  for v in ("10", "2", "01_003"):
    _touch(tmp_path / "testing" / "frames" / v, "0.jpg", "1.jpg")
  entries = discover(tmp_path, "testing", "prefix")
  assert [e.name for e in entries] == ["01_003", "2", "10"]
  assert [e.scene for e in entries] == ["01", "2", "10"]
  assert entries[0].kind == "frames" and len(entries[0].frames) == 2


def test_discover_videos(tmp_path):
  _touch(tmp_path / "training" / "videos", "10.avi", "2.mp4", "readme.txt")
  entries = discover(tmp_path, "training", "video")
  assert [(e.name, e.kind, e.frames) for e in entries] == [("2", "video", ()), ("10", "video", ())]


def test_discover_missing_split_error(tmp_path):
  _raises_one_line(r"split folder not found: .*testing \(expected .*frames", discover, tmp_path, "testing")


def test_discover_empty_split_error(tmp_path):
  (tmp_path / "testing").mkdir()
  _raises_one_line(r"no frames/ or videos/ folder in .*testing", discover, tmp_path, "testing")


def test_discover_real_ped2(ped2_root):
  entries = discover(ped2_root, "testing")
  assert [len(e.frames) for e in entries] == [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180]
  assert entries[0].frames[0].name == "000.jpg" and {e.scene for e in entries} == {"0"}
