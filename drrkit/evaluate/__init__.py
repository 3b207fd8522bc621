"""Evaluation of X-WIN runs without downloads: view retrieval on held-out CTs, linear probes of
frozen features against phantom ground truth and labelled radiograph folders, encoder export."""

from drrkit.evaluate.export import export_encoder, load_exported_encoder
from drrkit.evaluate.loading import load_run, pooled_features, random_init
from drrkit.evaluate.report import evaluate_run, probe_folder

__all__ = ["evaluate_run", "probe_folder", "export_encoder", "load_exported_encoder", "load_run",
           "pooled_features", "random_init"]
