"""Tests for jaxvad.data.labels: every label format, count checks, and agreement of the real label files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from jaxvad.data.errors import DataError
from jaxvad.data.labels import (intervals_to_labels, load_avenue_mask_file, load_frame_labels, load_pixel_masks,
                                parse_m_intervals, split_by_lengths)

M_TEXT = """TestVideoFile = {};
TestVideoFile{end+1}.gt_frame = [2:4];
TestVideoFile{end+1}.gt_frame = [1:2, 5:6];  % two intervals
TestVideoFile{end+1}.gt_frame = [];
"""
M_EXPECTED = [[0, 1, 1, 1, 0], [1, 1, 0, 0, 1, 1], [0, 0, 0]]


def _one_line_error(match, fn, *args, **kwargs):
  with pytest.raises(DataError, match=match) as info:
    fn(*args, **kwargs)
  assert "\n" not in str(info.value)


def _lists(arrs):
  assert all(a.dtype == np.int8 for a in arrs)
  return [a.tolist() for a in arrs]


def test_intervals_and_split():
  assert intervals_to_labels([(1, 2), (4, 4)], 5).tolist() == [1, 1, 0, 1, 0]
  parts = split_by_lengths(np.array([1, 0, 0, 1, 1]), [2, 3])
  assert _lists(parts) == [[1, 0], [0, 1, 1]]


def test_interval_outside_video_error():
  _one_line_error(r"\[3:9\] in f\.mat .* outside .* 1\.\.5", intervals_to_labels, [(3, 9)], 5, "f.mat")


def test_m_parser_multi_interval_and_empty(tmp_path):
  assert parse_m_intervals(M_TEXT) == [[(2, 4)], [(1, 2), (5, 6)], []]
  f = tmp_path / "UCSDtoy.m"
  f.write_text(M_TEXT)
  assert _lists(load_frame_labels(f, video_lengths=[5, 6, 3])) == M_EXPECTED


def test_m_video_count_mismatch_error(tmp_path):
  f = tmp_path / "UCSDtoy.m"
  f.write_text(M_TEXT)
  _one_line_error(r"video count mismatch in .*UCSDtoy\.m: 3 videos .* but 2", load_frame_labels, f,
                  video_lengths=[5, 6])


def test_mat_round_trip(tmp_path):
  f = tmp_path / "toy.mat"
  gt = np.empty((1, 3), object)
  gt[0, 0] = np.array([[2], [4]], np.uint8)
  gt[0, 1] = np.array([[1, 5], [2, 6]], np.uint8)
  gt[0, 2] = np.zeros((2, 0), np.uint8)
  scipy.io.savemat(f, {"gt": gt})
  assert _lists(load_frame_labels(f, video_lengths=[5, 6, 3])) == M_EXPECTED


def test_mat_interval_outside_error(tmp_path):
  f = tmp_path / "toy.mat"
  gt = np.empty((1, 1), object)
  gt[0, 0] = np.array([[2], [9]], np.uint8)
  scipy.io.savemat(f, {"gt": gt})
  _one_line_error(r"\[2:9\] in .*toy\.mat \(video 1\)", load_frame_labels, f, video_lengths=[5])


@pytest.mark.parametrize("shape", [(1, 5), (5,)])
def test_npy_shapes(tmp_path, shape):
  f = tmp_path / "labels.npy"
  np.save(f, np.array([0, 1, 1, 0, 1], np.int64).reshape(shape))
  assert _lists(load_frame_labels(f, video_lengths=[2, 3])) == [[0, 1], [1, 0, 1]]
  assert _lists(load_frame_labels(f)) == [[0, 1, 1, 0, 1]]


def test_npy_count_mismatch_error(tmp_path):
  f = tmp_path / "labels.npy"
  np.save(f, np.zeros((1, 5), np.uint8))
  _one_line_error(r"label count mismatch in .*labels\.npy: 5 labels but 6 frames", load_frame_labels, f,
                  video_lengths=[3, 3])


def test_npy_object_array_refused(tmp_path):
  f = tmp_path / "labels.npy"
  np.save(f, np.array([[0, 1], [1]], dtype=object), allow_pickle=True)
  _one_line_error(r"cannot read .*labels\.npy without pickle", load_frame_labels, f)


def test_shanghaitech_per_video_dir(tmp_path):
  d = tmp_path / "test_frame_mask"
  d.mkdir()
  np.save(d / "01_0014.npy", np.array([0, 1, 1]))
  np.save(d / "01_0002.npy", np.array([1, 0], np.uint8))
  assert _lists(load_frame_labels(d)) == [[1, 0], [0, 1, 1]]
  assert _lists(load_frame_labels(d, ["01_0014"], [3])) == [[0, 1, 1]]
  _one_line_error(r"label count mismatch in .*01_0014\.npy: 3 labels but the video has 4", load_frame_labels, d,
                  ["01_0014"], [4])
  _one_line_error(r"missing per-video labels in .*test_frame_mask: 02_0001\.npy", load_frame_labels, d,
                  ["02_0001"], [4])


def test_avenue_mask_dir(tmp_path):
  d = tmp_path / "testing_label_mask"
  d.mkdir()
  for i, frames in [(1, [0, 1]), (2, [1, 0, 0]), (10, [0])]:  # "10" must sort after "2".
    cell = np.empty((1, len(frames)), object)
    for j, on in enumerate(frames):
      cell[0, j] = np.full((4, 6), on, np.uint8)
    scipy.io.savemat(d / f"{i}_label.mat", {"volLabel": cell})
  assert _lists(load_frame_labels(d, video_lengths=[2, 3, 1])) == [[0, 1], [1, 0, 0], [0]]
  _one_line_error(r"label count mismatch in .*2_label\.mat: 3 labels but test video 2 has 4", load_frame_labels,
                  d, video_lengths=[2, 4, 1])


def test_pixel_masks(tmp_path):
  d = tmp_path / "gt_masks" / "01"
  d.mkdir(parents=True)
  for i in range(11):
    Image.fromarray(np.full((8, 12), 255 * (i % 2), np.uint8)).save(d / f"{i:03d}.png")
  m = load_pixel_masks(d)
  assert m.shape == (11, 8, 12) and m.dtype == np.uint8 and m[:, 0, 0].tolist() == [0, 255] * 5 + [0]
  assert load_pixel_masks(d, (4, 4)).shape == (11, 4, 4)


# ---------------------------------------------------------------- real label files (skipped where absent).


def _lengths(shared_data, key):
  return json.loads((shared_data / "labels" / "test_video_lengths.json").read_text())[key]


def test_real_ped2_formats_agree(shared_data):
  lengths = _lengths(shared_data, "ped2_test")
  ped2 = shared_data / "ped2"
  ref = np.concatenate(load_frame_labels(ped2 / "frame_labels_ped2.npy", video_lengths=lengths))
  for f in ("ped2.mat", "UCSDped2.m"):
    got = np.concatenate(load_frame_labels(ped2 / f, video_lengths=lengths))
    np.testing.assert_array_equal(got, ref)
  assert ref.shape == (2010,) and int(ref.sum()) == 1648


def test_real_ped1_m_equals_npy(shared_data):
  lengths = _lengths(shared_data, "ped1_test")
  got = np.concatenate(load_frame_labels(shared_data / "labels" / "UCSDped1.m", video_lengths=lengths))
  ref = np.concatenate(load_frame_labels(shared_data / "labels" / "frame_labels_ped1.npy", video_lengths=lengths))
  np.testing.assert_array_equal(got, ref)
  assert got.shape == (7200,) and int(got.sum()) == 4045


def test_real_shanghaitech_split(shared_data):
  lengths = _lengths(shared_data, "shanghaitech_test")
  names = sorted(lengths)
  parts = load_frame_labels(shared_data / "labels" / "frame_labels_shanghai.npy", names, [lengths[n] for n in names])
  assert len(parts) == 107 and sum(len(p) for p in parts) == 40791 and int(sum(p.sum() for p in parts)) == 17326


def test_real_avenue_small_videos(shared_data):
  # Decompressing all 21 mask files takes ~15 s: check the two shortest videos here, all of them in the slow test.
  lengths = _lengths(shared_data, "avenue_test")
  ref = split_by_lengths(np.load(shared_data / "labels" / "frame_labels_avenue.npy"), lengths)
  for i in (8, 21):
    got = load_avenue_mask_file(shared_data / "labels" / "avenue_testing_label_mask" / f"{i}_label.mat")
    np.testing.assert_array_equal(got, ref[i - 1])


@pytest.mark.slow
def test_real_avenue_all_masks(shared_data):
  lengths = _lengths(shared_data, "avenue_test")
  got = np.concatenate(load_frame_labels(shared_data / "labels" / "avenue_testing_label_mask", video_lengths=lengths))
  np.testing.assert_array_equal(got, np.load(shared_data / "labels" / "frame_labels_avenue.npy"))
  assert got.shape == (15324,) and int(got.sum()) == 3712


def test_real_ped2_masks_match_labels(ped2_root):
  masks = load_pixel_masks(ped2_root / "testing" / "gt_masks" / "01")
  labels = load_frame_labels(ped2_root / "frame_labels_ped2.npy", video_lengths=[180] * 2 + [1650])[0]
  assert masks.shape == (180, 240, 360)
  np.testing.assert_array_equal(masks.reshape(180, -1).any(1), labels.astype(bool))
