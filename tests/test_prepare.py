"""Tests for jaxvad.data.decode / prepare: decoding, the uint8 cache, resume, and label checks."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from PIL import Image

from jaxvad.data.decode import read_frames
from jaxvad.data.errors import DataError
from jaxvad.data.layout import VideoEntry, discover
from jaxvad.data.prepare import cache_path, load_split, prepare_split, read_split

SIZE = (8, 12)


def _make_root(tmp_path, lengths=(3, 4), split="testing", gray=True):
  """Tiny data set: videos "1", "2", ... of 16x24 images; pixel value encodes (video, frame)."""
  root = tmp_path / "toy"
  for v, n in enumerate(lengths, start=1):
    d = root / split / "frames" / str(v)
    d.mkdir(parents=True)
    for i in range(n):
      arr = np.full((16, 24), 10 * v + 20 * i, np.uint8)
      Image.fromarray(arr if gray else np.stack([arr] * 3, -1)).save(d / f"{i:03d}.png")
  return root


def _labels(tmp_path, values):
  f = tmp_path / "labels.npy"
  np.save(f, np.array(values, np.uint8)[None])
  return f


def _masks(tmp_path, lengths):
  for v, n in enumerate(lengths, start=1):
    d = tmp_path / "gt_masks" / str(v)
    d.mkdir(parents=True)
    for i in range(n):
      Image.fromarray(np.full((16, 24), 255 * (i % 2), np.uint8)).save(d / f"{i}.png")
  return tmp_path / "gt_masks"


def test_read_frames_gray_to_rgb(tmp_path):
  root = _make_root(tmp_path)
  entry = discover(root, "testing")[1]
  frames = read_frames(entry, SIZE)
  assert frames.shape == (4, 8, 12, 3) and frames.dtype == np.uint8
  assert (frames[..., 0] == frames[..., 2]).all() and frames[:, 0, 0, 0].tolist() == [20, 40, 60, 80]


def test_corrupt_image_error(tmp_path):
  root = _make_root(tmp_path)
  bad = root / "testing" / "frames" / "2" / "002.png"
  bad.write_bytes(b"this is not an image")
  with pytest.raises(DataError, match=r"cannot read image .*2/002\.png") as info:
    prepare_split(root, "testing", tmp_path / "cache", dataset="toy", size=SIZE, progress=False)
  assert "\n" not in str(info.value)
  assert not list((tmp_path / "cache").rglob("*tmp*"))  # The half-written video was cleaned up.


def test_truncated_jpeg_error(tmp_path):
  f = tmp_path / "v" / "0.jpg"
  f.parent.mkdir()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8)).save(f)
  f.write_bytes(f.read_bytes()[:200])
  with pytest.raises(DataError, match=r"cannot read image .*0\.jpg"):
    read_frames(VideoEntry("v", "0", f.parent, "frames", (f,)), SIZE)


def test_prepare_load_round_trip_equals_read_split(tmp_path):
  root = _make_root(tmp_path)
  labels = _labels(tmp_path, [0, 1, 0, 0, 0, 1, 1])
  masks = _masks(tmp_path, [3])  # Only video "1" has masks.
  out = prepare_split(root, "testing", tmp_path / "cache", dataset="toy", size=SIZE, labels=labels,
                      masks_dir=masks, progress=False)
  assert out == cache_path(tmp_path / "cache", "toy", "testing", SIZE, root)
  assert out.parent.parent.parent == tmp_path / "cache" / "toy" and out.parent.parent.name.startswith("toy-")
  index = json.loads((out / "index.json").read_text())
  assert index["size"] == [8, 12] and [v["num_frames"] for v in index["videos"]] == [3, 4]
  assert [(v["has_labels"], v["has_masks"]) for v in index["videos"]] == [(True, True), (True, False)]
  assert not list(out.glob(".*tmp*"))
  cached = load_split(tmp_path / "cache", "toy", "testing", SIZE)
  mem = read_split(root, "testing", dataset="toy", size=SIZE, labels=labels, masks_dir=masks)
  assert isinstance(cached.videos[0].frames, np.memmap)
  for a, b in zip(cached.videos, mem.videos):
    assert (a.name, a.scene) == (b.name, b.scene)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.labels.dtype == np.int8
  np.testing.assert_array_equal(cached.videos[0].masks, mem.videos[0].masks)
  assert cached.videos[1].masks is None and cached.labels.tolist() == [0, 1, 0, 0, 0, 1, 1]


def test_resume_skips_existing_videos(tmp_path):
  root = _make_root(tmp_path)
  cache = tmp_path / "cache"
  out = prepare_split(root, "testing", cache, dataset="toy", size=SIZE, progress=False)
  first, second = out / "1.frames.npy", out / "2.frames.npy"
  mtimes = first.stat().st_mtime_ns, second.stat().st_mtime_ns
  second.unlink()  # As if interrupted before video 2 was finished.
  time.sleep(0.01)
  prepare_split(root, "testing", cache, dataset="toy", size=SIZE, progress=False)
  assert first.stat().st_mtime_ns == mtimes[0] and second.is_file()
  # A cached video with the wrong frame count is redone.
  np.save(first, np.zeros((2, *SIZE, 3), np.uint8))
  prepare_split(root, "testing", cache, dataset="toy", size=SIZE, progress=False)
  assert np.load(first).shape[0] == 3


def test_label_frame_count_mismatch_error(tmp_path):
  root = _make_root(tmp_path)
  labels = _labels(tmp_path, [0] * 6)
  for fn in (prepare_split, read_split):
    args = (root, "testing", tmp_path / "cache") if fn is prepare_split else (root, "testing")
    with pytest.raises(DataError, match=r"label count mismatch in .*labels\.npy: 6 labels but 7 frames") as info:
      fn(*args, dataset="toy", size=SIZE, labels=labels)
    assert "\n" not in str(info.value)
  assert not list((tmp_path / "cache").rglob("*.frames.npy"))  # Failed before decoding.


def test_load_split_missing_cache_error(tmp_path):
  with pytest.raises(DataError, match=r"no prepared cache at .*: run `jaxvad prepare`"):
    load_split(tmp_path, "toy", "testing", SIZE)


def _write_avi(path, n=5, size=32):
  av = pytest.importorskip("av")
  with av.open(str(path), "w") as container:
    stream = container.add_stream("mpeg4", rate=25)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    for i in range(n):
      img = np.full((size, size, 3), 40 * i, np.uint8)
      for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def test_avi_video_decodes_all_frames(tmp_path):
  videos = tmp_path / "ucf" / "training" / "videos"
  videos.mkdir(parents=True)
  _write_avi(videos / "Abuse001.avi")
  entry, = discover(tmp_path / "ucf", "training", "video")
  frames = read_frames(entry, (16, 16))
  assert entry.kind == "video" and frames.shape == (5, 16, 16, 3)
  np.testing.assert_allclose(frames[:, 8, 8].mean(-1), 40 * np.arange(5), atol=6)
  out = prepare_split(tmp_path / "ucf", "training", tmp_path / "cache", dataset="ucf", size=(16, 16),
                      scene_rule="video", progress=False)
  split = load_split(tmp_path / "cache", "ucf", "training", (16, 16))
  assert split.videos[0].scene == "Abuse001" and split.num_frames == 5 and (out / "index.json").is_file()


def test_corrupt_video_error(tmp_path):
  pytest.importorskip("av")
  f = tmp_path / "bad.avi"
  f.write_bytes(b"garbage" * 10)
  with pytest.raises(DataError, match=r"cannot decode video .*bad\.avi"):
    read_frames(VideoEntry("bad", "bad", f, "video"), SIZE)


def test_real_ped2_video_01(ped2_root, tmp_path):
  out = prepare_split(ped2_root, "testing", tmp_path, dataset="ped2", size=(64, 64), videos=["01"],
                      labels=ped2_root / "frame_labels_ped2.npy", masks_dir=ped2_root / "testing" / "gt_masks",
                      progress=False)
  split = load_split(tmp_path, "ped2", "testing", (64, 64))
  video, = split.videos
  assert video.frames.shape == (180, 64, 64, 3) and video.masks.shape == (180, 64, 64)
  assert int(video.labels.sum()) == 120 and video.labels[:60].sum() == 0  # UCSDped2.m: [61:180].
  assert (out / "01.frames.npy").is_file()


def test_frame_of_another_size_warns_once_naming_the_file(tmp_path, caplog):
  root = _make_root(tmp_path, lengths=(4,))
  d = root / "testing" / "frames" / "1"
  for name in ("001.png", "003.png"):  # Two odd frames in one video: one warning, naming the first.
    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(d / name)
  with caplog.at_level(logging.WARNING, logger="jaxvad.data.decode"):
    frames = read_frames(discover(root, "testing")[0], SIZE)
  assert frames.shape == (4, *SIZE, 3) and frames[1].max() == 7
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and "001.png is 20x30 (HxW)" in warnings[0] and "16x24" in warnings[0]
  caplog.clear()
  with caplog.at_level(logging.WARNING, logger="jaxvad.data.decode"):
    read_frames(discover(_make_root(tmp_path / "ok"), "testing")[0], SIZE)
  assert not caplog.records  # Same-size frames: silent.
