"""Evaluation (SPEC 5): metrics, scoring over test videos, reports.

Plots live in `jaxvad.evaluate.plots` (imported on demand: matplotlib is slow to import).
"""

from __future__ import annotations

from jaxvad.evaluate.metrics import HIGH_IS_NORMAL
from jaxvad.evaluate.metrics import combine
from jaxvad.evaluate.metrics import frame_auc
from jaxvad.evaluate.metrics import gaussian_smooth
from jaxvad.evaluate.metrics import minmax_per_video
from jaxvad.evaluate.metrics import per_video_auc
from jaxvad.evaluate.metrics import pixel_auc
from jaxvad.evaluate.metrics import psnr
from jaxvad.evaluate.metrics import psnr_jax
from jaxvad.evaluate.metrics import ucsd_pixel_criterion_auc
from jaxvad.evaluate.report import format_table
from jaxvad.evaluate.report import load_scores
from jaxvad.evaluate.report import save_scores
from jaxvad.evaluate.scoring import VideoScores
from jaxvad.evaluate.scoring import evaluate_scores
from jaxvad.evaluate.scoring import merge_video_scores
from jaxvad.evaluate.scoring import score_split
