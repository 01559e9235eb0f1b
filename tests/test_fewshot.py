"""The few-shot protocol end to end on a tiny synthetic setting, and single-video adaptation."""

import json

import jax
import numpy as np
import pytest
from PIL import Image

from jaxvad import cli, config_lib, models
from jaxvad.data import synthetic
from jaxvad.data.errors import DataError
from jaxvad.data.types import Split
from jaxvad.meta import core, fewshot

TINY = ["data.size=[16,16]", "data.synthetic.num_scenes=3", "data.synthetic.frames_per_video=30",
        "data.synthetic.train_videos_per_scene=1", "data.synthetic.test_videos_per_scene=1",
        "data.scenes=('01','02')", "target.size=[16,16]", "target.scenes=('03',)",
        "target.synthetic.num_scenes=3", "target.synthetic.frames_per_video=30",
        "target.synthetic.train_videos_per_scene=1", "target.synthetic.test_videos_per_scene=1",
        "model.width=0.0625", "model.num_prototypes=3", "train.num_steps=3", "train.batch_size=4",
        "meta.num_steps=2", "meta.episodes=2", "meta.k_support=2", "meta.n_query=1", "meta.log_every=1",
        "meta.checkpoint_every=1", "fewshot.shots=(0,1,3)", "fewshot.batch_size=8"]


def _tiny_config():
  return config_lib.apply_overrides(config_lib.load_config("configs/meta.py:synthetic"), TINY)


@pytest.fixture(scope="module")
def tiny_setup():
  config = _tiny_config()
  mdef = models.build(config.model)
  x = jax.numpy.zeros((1, 4, 16, 16, 3))
  params = mdef.module.init(jax.random.PRNGKey(0), x)["params"]
  theta, frozen = core.split_params(params)
  target = synthetic.make_benchmark(size=16, num_scenes=1, frames_per_video=30, train_videos_per_scene=1,
                                    test_videos_per_scene=2)["testing"]
  return config, mdef, theta, frozen, target


def test_table_scores_same_frames_for_every_k(tiny_setup):
  config, mdef, theta, frozen, target = tiny_setup
  adapter = fewshot.Adapter(mdef, config.model, frozen, finetune_lr=1e-2)
  alpha = core.init_alpha(theta, 1e-2)
  table = fewshot.fewshot_table(adapter, theta, alpha, target, t=4, shots=(0, 1, 3), batch_size=8,
                                score_weights={"psnr": 1.0, "feature_error": 1.0}, progress=False)
  assert table["first_window"] == 3
  n = {(m, k): table["results"][m][k]["num_frames_scored"] for m in ("meta", "finetune") for k in (0, 1, 3)}
  assert len(set(n.values())) == 1 and table["num_frames_scored"] == 2 * (30 - 4 - 3)
  assert table["auc"]["meta"][0] == table["auc"]["finetune"][0]  # K = 0: no adaptation.
  assert table["auc"]["meta"][3] != table["auc"]["meta"][0]
  rows = fewshot.table_rows(table, "t")
  assert [r["method"] for r in rows] == ["Meta", "Finetune from meta init"] and set(rows[0]) >= {"K=0", "K=1", "K=3"}


def test_k_larger_than_video_allows_is_a_data_error(tiny_setup):
  config, mdef, theta, frozen, target = tiny_setup
  adapter = fewshot.Adapter(mdef, config.model, frozen)
  with pytest.raises(DataError, match="K = 40"):
    fewshot.score_video_adapted(adapter, "meta", theta, core.init_alpha(theta), target, 0, t=4, k=40,
                                first_window=40, batch_size=8)


def test_meta_command_end_to_end_then_adapt_one_video(tmp_path, capsys):
  workdir = tmp_path / "meta"
  args = ["meta", "--config", "configs/meta.py:synthetic", "--workdir", str(workdir), "--no-progress"]
  for item in TINY:
    args += ["--set", item]
  assert cli.main(args) == 0
  assert "Few-shot scene adaptation" in capsys.readouterr().out
  table = json.loads((workdir / "fewshot" / "fewshot.json").read_text())
  assert table["shots"] == [0, 1, 3] and set(table["auc"]) == {"meta", "finetune"}
  assert all(0.0 <= table["auc"][m][k] <= 1.0 for m in table["auc"] for k in table["auc"][m])
  assert (workdir / "meta" / "metrics.jsonl").exists() and (workdir / "fewshot" / "table.md").exists()

  video = synthetic.make_benchmark(size=16, num_scenes=1, frames_per_video=20, train_videos_per_scene=1,
                                   test_videos_per_scene=1)["testing"].videos[0]
  folder = tmp_path / "cam" / "video7"
  folder.mkdir(parents=True)
  for i, frame in enumerate(video.frames):
    Image.fromarray(frame).save(folder / f"{i:04d}.png")
  adapt = ["adapt", "--config", "configs/meta.py:synthetic", "--workdir", str(workdir), "--video", str(folder),
           "--shots", "2", "--out", str(tmp_path / "out"), "--no-progress"]
  for item in TINY:
    adapt += ["--set", item]
  assert cli.main(adapt) == 0
  assert "scored 14 frames" in capsys.readouterr().out  # 20 - t - K.
  assert (tmp_path / "out" / "frames.csv").exists()
  assert (tmp_path / "out" / "scores_p1.png").stat().st_size > 1000  # The adapted video's score curve.
