"""The prepared cache follows its inputs: fingerprints, re-preparing what changed, enum checks (issue 13, item 1)."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from jaxvad import config_lib
from jaxvad.data import prepare, sources
from jaxvad.errors import ConfigError, DataError
from jaxvad.evaluate import metrics

SIZE = 16


def _write_root(root, lengths=(4, 5), base=10, labels=None, masks=True):
  """Community layout: testing/frames/<v>/<i>.png of uniform level base + 10 v + 20 i, a label file, masks."""
  for v, n in enumerate(lengths, start=1):
    d = root / "testing" / "frames" / f"{v:02d}"
    d.mkdir(parents=True)
    for i in range(n):
      Image.fromarray(np.full((SIZE, SIZE), base + 10 * v + 20 * i, np.uint8)).save(d / f"{i:03d}.png")
    if masks:
      m = root / "testing" / "gt_masks" / f"{v:02d}"
      m.mkdir(parents=True)
      for i in range(n):
        Image.fromarray(np.full((SIZE, SIZE), 255 * (i % 2), np.uint8)).save(m / f"{i:03d}.png")
  total = sum(lengths)
  labels = np.arange(total) % 2 if labels is None else np.asarray(labels)
  np.save(root / "labels.npy", labels.astype(np.uint8)[None])
  return root


def _config(root, cache, **kw):
  c = config_lib.data_config("ped2", size=SIZE)
  c.update(root=str(root), cache_dir=str(cache), labels="labels.npy", masks_dir="testing/gt_masks", **kw)
  return c


def _bump(path):
  """Makes a rewritten file's mtime differ from the original's on any file system clock."""
  st = path.stat()
  os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def _levels(split):
  return [np.asarray(v.frames)[:, 0, 0, 0].tolist() for v in split.videos]


def test_unchanged_cache_is_reused_without_decoding(tmp_path, monkeypatch):
  config = _config(_write_root(tmp_path / "toy"), tmp_path / "cache")
  first = sources.load(config, "testing", progress=False)
  monkeypatch.setattr(prepare, "_write_frames", lambda *a: pytest.fail("an unchanged cache was decoded again"))
  again = sources.load(config, "testing", progress=False)
  assert _levels(again) == _levels(first) == [[20, 40, 60, 80], [30, 50, 70, 90, 110]]
  index = json.loads((prepare.cache_path(config.cache_dir, "ped2", "testing", (SIZE, SIZE), config.root)
                      / "index.json").read_text())
  assert index["format"] == 2 and index["fingerprint"]["root"] == str((tmp_path / "toy").resolve())
  assert index["fingerprint"]["videos"]["01"]["frames"]["files"][0][0] == "000.png"


def test_missing_root_is_an_error_not_the_old_cache(tmp_path):
  root = _write_root(tmp_path / "toy")
  config = _config(root, tmp_path / "cache")
  sources.load(config, "testing", progress=False)
  root.rename(tmp_path / "moved")
  with pytest.raises(DataError, match=r"data root .*toy does not exist") as info:
    sources.load(config, "testing", progress=False)
  assert "\n" not in str(info.value)


def test_flipped_labels_after_caching_give_the_new_auc(tmp_path, caplog):
  root = _write_root(tmp_path / "toy")
  config = _config(root, tmp_path / "cache")
  before = sources.load(config, "testing", progress=False)
  scores = np.linspace(0.0, 1.0, 9) ** 2 + (np.arange(9) % 2) * 0.3  # Fixed scores, independent of the labels.
  auc_before = metrics.frame_auc(scores, before.labels)
  np.save(root / "labels.npy", (1 - np.arange(9) % 2).astype(np.uint8)[None])
  _bump(root / "labels.npy")
  with caplog.at_level(logging.INFO, logger="jaxvad.data.prepare"):
    after = sources.load(config, "testing", progress=False)
  assert after.labels.tolist() == (1 - np.arange(9) % 2).tolist()
  assert metrics.frame_auc(scores, after.labels) == pytest.approx(1.0 - auc_before)
  assert "out of date" in caplog.text and "labels" in caplog.text


def test_replaced_frame_gives_new_pixels_and_only_its_video_is_decoded(tmp_path, monkeypatch, caplog):
  root = _write_root(tmp_path / "toy")
  config = _config(root, tmp_path / "cache")
  sources.load(config, "testing", progress=False)
  frame = root / "testing" / "frames" / "02" / "003.png"
  Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(frame)  # A black frame.
  _bump(frame)
  decoded = []
  write = prepare._write_frames  # pylint: disable=protected-access
  monkeypatch.setattr(prepare, "_write_frames", lambda e, *a: decoded.append(e.name) or write(e, *a))
  with caplog.at_level(logging.INFO, logger="jaxvad.data.prepare"):
    split = sources.load(config, "testing", progress=False)
  assert _levels(split) == [[20, 40, 60, 80], [30, 50, 70, 0, 110]]
  assert decoded == ["02"]
  assert "video 02 frames: 003.png (modified)" in caplog.text


def test_replaced_mask_is_re_prepared(tmp_path):
  root = _write_root(tmp_path / "toy")
  config = _config(root, tmp_path / "cache")
  assert np.asarray(sources.load(config, "testing", progress=False).videos[0].masks)[0].max() == 0
  mask = root / "testing" / "gt_masks" / "01" / "000.png"
  Image.fromarray(np.full((SIZE, SIZE), 255, np.uint8)).save(mask)
  _bump(mask)
  assert np.asarray(sources.load(config, "testing", progress=False).videos[0].masks)[0].min() == 255


def test_other_root_with_the_same_dataset_name_reads_its_own_data(tmp_path):
  cache = tmp_path / "cache"
  a = sources.load(_config(_write_root(tmp_path / "a" / "ped2"), cache), "testing", progress=False)
  b = sources.load(_config(_write_root(tmp_path / "b" / "ped2", lengths=(3,), base=100), cache), "testing",
                   progress=False)
  assert _levels(a) == [[20, 40, 60, 80], [30, 50, 70, 90, 110]]
  assert _levels(b) == [[110, 130, 150]]
  assert len(list((cache / "ped2").iterdir())) == 2  # ped2-<hash of a>, ped2-<hash of b>.


def test_legacy_cache_without_fingerprint_is_rebuilt(tmp_path, caplog):
  root = _write_root(tmp_path / "toy")
  config = _config(root, tmp_path / "cache")
  out = prepare.cache_path(config.cache_dir, "ped2", "testing", (SIZE, SIZE), root)
  sources.load(config, "testing", progress=False)
  index = json.loads((out / "index.json").read_text())
  for f in out.glob("*.json"):
    f.unlink()
  np.save(out / "01.frames.npy", np.zeros((4, SIZE, SIZE, 3), np.uint8))  # Stale content, right shape.
  (out / "index.json").write_text(json.dumps({k: index[k] for k in ("dataset", "split", "size", "videos")}
                                             | {"format": 1}))
  assert _levels(sources.load(config, "testing", progress=False))[0] == [20, 40, 60, 80]
  old_layout = tmp_path / "cache" / "ped2" / "testing" / f"{SIZE}x{SIZE}"  # Where older jaxvad cached.
  old_layout.mkdir(parents=True)
  (old_layout / "index.json").write_text("{}")
  with caplog.at_level(logging.INFO, logger="jaxvad.data.sources"):
    assert _levels(sources.load(config, "testing", progress=False))[0] == [20, 40, 60, 80]
  assert f"{old_layout} is a cache of an older jaxvad" in caplog.text


@pytest.mark.parametrize("field,value,valid", [("format", "tdfs", "'cache', 'tfds'"),
                                               ("layout", "usd", "'community', 'ucsd'"),
                                               ("scene_rule", "prefx", "'dataset', 'prefix'")])
def test_unknown_enum_values_are_config_errors(tmp_path, field, value, valid):
  config = _config(_write_root(tmp_path / "toy"), tmp_path / "cache")
  sources.load(config, "testing", progress=False)  # A good cache exists: a typo must not read it.
  config[field] = value
  for fn in (lambda: sources.load(config, "testing", progress=False), lambda: sources.prepare_from_config(config)):
    with pytest.raises(ConfigError, match=rf"data\.{field}='{value}' is not valid; use one of {valid}") as info:
      fn()
    assert "\n" not in str(info.value)
