"""Figures a researcher keeps: every video's curve, normalisation said on the axis, shared colour bars, examples."""

import numpy as np
import pytest

from jaxvad.evaluate import examples, plots, scoring


@pytest.fixture
def figures(monkeypatch):
  """Records (file name, figure) of every PNG the plotting functions save."""
  saved = []
  original = plots._save  # pylint: disable=protected-access

  def save(fig, path):
    saved.append((path.name if hasattr(path, "name") else str(path), fig))
    return original(fig, path)

  monkeypatch.setattr(plots, "_save", save)
  return saved


def _video_scores(num_videos=14, length=20, t=2, labels=True) -> scoring.VideoScores:
  rng = np.random.default_rng(0)
  n = length - t
  lab = [np.zeros(n, np.int8) for _ in range(num_videos)]
  for i, y in enumerate(lab):
    y[5 + i % 6: 9 + i % 6] = 1
  return scoring.VideoScores(
      dataset="fake", t=t, names=[f"{i + 1:02d}" for i in range(num_videos)], scenes=["0"] * num_videos,
      num_frames=[length] * num_videos, frame_index=[np.arange(t, length)] * num_videos,
      scores={"psnr": [rng.uniform(22, 38, n) for _ in range(num_videos)]}, labels=lab if labels else None)


def _panels(fig):
  return [ax for ax in fig.axes if ax.lines]


def _colorbars(fig):
  return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def test_score_curves_cover_every_video_on_pages(tmp_path, figures):
  vs = _video_scores(num_videos=14)
  res = scoring.evaluate_scores(vs)
  paths = plots.plot_score_curves(vs, res, tmp_path, per_page=12, cols=3)
  assert [p.name for p in paths] == ["scores_p1.png", "scores_p2.png"] and all(p.is_file() for p in paths)
  panels = [ax for _, fig in figures for ax in _panels(fig)]
  assert sorted(ax.get_title().split()[0] for ax in panels) == vs.names  # All 14 videos, each once.
  assert [len(_panels(fig)) for _, fig in figures] == [12, 2]
  assert all("min-max per video" in ax.get_ylabel() for ax in panels if ax.get_ylabel())
  assert "psnr min-max normalised per video" in figures[0][1]._suptitle.get_text()  # pylint: disable=protected-access
  np.testing.assert_allclose(panels[3].lines[0].get_ydata(), res["frame_scores"]["anomaly"][3])


def test_normalisation_note_names_the_terms():
  assert plots.normalisation_note({"psnr": 1.0}).startswith("psnr min-max normalised per video (each curve spans")
  note = plots.normalisation_note({"psnr": 0.6, "memory_distance": 0.4}, labelled=False)
  assert note == "each term min-max normalised per video, then 0.6 psnr + 0.4 memory_distance, rescaled to [0, 1]"


def test_raw_psnr_curves(tmp_path, figures):
  vs = _video_scores(num_videos=5)
  paths = plots.plot_psnr_curves(vs, tmp_path)
  assert [p.name for p in paths] == ["psnr_p1.png"]
  panels = _panels(figures[0][1])
  assert len(panels) == 5 and "PSNR (dB), raw" in panels[0].get_ylabel()
  np.testing.assert_allclose(panels[2].lines[0].get_ydata(), vs.scores["psnr"][2])  # Not normalised.
  assert len({ax.get_ylim() for ax in panels}) == 1  # One dB scale for every video.


def test_error_maps_share_one_colour_bar(tmp_path, figures):
  rng = np.random.default_rng(1)
  frames = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
  preds = rng.uniform(-1, 1, (4, 8, 8, 3))
  err = rng.uniform(0, 1, (4, 8, 8)) * np.array([1, 2, 3, 4])[:, None, None]
  plots.plot_error_maps(frames, preds, err, np.zeros((4, 8, 8)), tmp_path / "e.png", indices=range(4))
  fig = figures[0][1]
  assert len(_colorbars(fig)) == 1
  err_images = [ax.images[0] for ax in fig.axes if ax.images and ax.get_title() in ("error", "")
                and ax.images[0].get_cmap().name == "inferno"]
  assert len(err_images) == 4
  assert {im.get_clim() for im in err_images} == {err_images[0].get_clim()}  # One scale, the largest error's.
  assert err_images[0].get_clim() == pytest.approx((0.0, err.max()))


def test_normalcy_maps_have_colour_bars(tmp_path, figures):
  rng = np.random.default_rng(2)
  maps = rng.dirichlet(np.ones(16), size=(2, 5)).transpose(0, 2, 1).reshape(2, 4, 4, 5)  # [n, h, w, M]
  plots.plot_normalcy_maps(rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8), rng.uniform(0, 1, (2, 8, 8)), maps,
                           tmp_path / "n.png", num_maps=3)
  assert len(_colorbars(figures[0][1])) == 3  # error, sum of maps, single maps


def test_select_examples_spread_of_kinds():
  # Video 0: abnormal 3-5 detected (0.9, 0.8, 0.85), normal frame 8 a false alarm (0.95).
  # Video 1: abnormal 2-3 missed (0.1, 0.15), normal frames low; video 2: abnormal 6 detected (0.7).
  s0 = np.array([.1, .1, .1, .9, .8, .85, .1, .1, .95, .1])
  y0 = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 0])
  s1 = np.array([.05, .05, .1, .15, .05, .05, .05, .05])
  y1 = np.array([0, 0, 1, 1, 0, 0, 0, 0])
  s2 = np.array([.2, .2, .2, .2, .2, .2, .7, .2])
  y2 = np.array([0, 0, 0, 0, 0, 0, 1, 0])
  got = examples.select_examples([s0, s1, s2], [y0, y1, y2], per_kind=2, threshold=0.5, min_gap=2)
  assert [(e.kind, e.video, e.position) for e in got] == [
      ("true detection", 0, 3), ("true detection", 2, 6),  # Best of video 0, then a new video before a second.
      ("false alarm", 0, 8),  # The only normal frame above the threshold.
      ("miss", 1, 2)]  # Lowest abnormal score; frame 3 of video 1 is closer than min_gap, so left out.
  assert got[0].score == 0.9 and got[3].label == 1


def test_youden_threshold():
  scores = [np.array([0.1, 0.2, 0.6, 0.3, 0.8, 0.9])]
  labels = [np.array([0, 0, 0, 1, 1, 1])]
  # Predicting >= 0.8 gives TPR 2/3, FPR 0 (J 0.67); >= 0.3 gives TPR 1, FPR 1/3 (J 0.67): ties -> highest.
  assert examples.youden_threshold(scores, labels) == 0.8
  assert examples.youden_threshold([np.array([0.1, 0.5, 0.4])], [np.array([0, 1, 0])]) == 0.5


def test_unlabeled_single_video_curve(tmp_path, figures):
  """What `jaxvad adapt` writes: the score curve of one unlabeled video."""
  vs = _video_scores(num_videos=1, labels=False)
  res = scoring.evaluate_scores(vs)
  paths = plots.plot_score_curves(vs, res, tmp_path)
  assert [p.name for p in paths] == ["scores_p1.png"] and paths[0].stat().st_size > 1000
  assert len(_panels(figures[0][1])) == 1
