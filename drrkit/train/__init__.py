"""X-WIN trainer: a chest-radiograph world model learned from DRR corpora (arXiv 2511.14918).

Parts (model.py): context encoder f (ViT), EMA target encoder f', view predictor g_v (context
tokens + action → target-view tokens), masked predictor g_m (I-JEPA), domain classifier f_c and a
latent→image decoder. Losses (losses.py, objective.py): view alignment (InfoNCE + affinity soft
labels), MIM, domain, classifier, decoder. Data (data.py, real.py, masks.py), schedules,
checkpoints and the loop (loop.py). Evaluation lives in drrkit.evaluate.
"""

from drrkit.train.config import TrainConfig, load_train_config
from drrkit.train.data import ProjectionViews, StepBatchSampler, scan_store, split_cts
from drrkit.train.loop import train
from drrkit.train.masks import MaskCollator
from drrkit.train.model import XWin, build_xwin
from drrkit.train.real import RealRadiographs

__all__ = ["TrainConfig", "load_train_config", "ProjectionViews", "StepBatchSampler", "scan_store", "split_cts",
           "train", "MaskCollator", "XWin", "build_xwin", "RealRadiographs"]
