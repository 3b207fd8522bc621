"""Export a trained X-WIN encoder as a timm-compatible safetensors state dict.

The file's metadata names the timm model and the create_model kwargs that load it strictly:

    meta = safetensors.safe_open(path, "pt").metadata()
    vit = timm.create_model(meta["timm_model"], pretrained=False, **json.loads(meta["timm_kwargs"]))
    vit.load_state_dict(safetensors.torch.load_file(path))          # strict

(no CLS token, global_pool='avg' with fc_norm=False, num_classes=0, in_chans and sizes of the run),
plus the input transform the encoder expects (per-image display transform to [0, 1], grey,
img_size, then (x − mean) / std with the run's model.input_mean / input_std).
"""

from __future__ import annotations

import json
from pathlib import Path

from drrkit.evaluate.loading import encoder_of, load_run
from drrkit.train.vit import timm_spec


def export_encoder(run: str | Path, out: str | Path, which: str = "target") -> dict:
    """Write the run's encoder (`target` = EMA f', or `context` = f) to `out`; returns metadata."""
    from safetensors.torch import save_file

    cfg, model, payload = load_run(run)
    name, kwargs = timm_spec(cfg.model, global_pool="avg")
    state = {k: v.detach().contiguous().cpu() for k, v in encoder_of(model, which).state_dict().items()}
    meta = {"timm_model": name, "timm_kwargs": json.dumps(kwargs), "encoder": which,
            "source_run": str(Path(run).resolve()), "step": str(payload["step"]),
            "input": json.dumps({"img_size": cfg.model.img_size, "in_chans": cfg.model.in_chans,
                                 "intensity": cfg.data.intensity, "range": [0.0, 1.0],
                                 "mean": cfg.model.input_mean, "std": cfg.model.input_std})}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out), metadata=meta)
    return meta


def load_exported_encoder(path: str | Path):
    """The timm model of an exported encoder, loaded strictly, with its input standardisation set
    for `drrkit.train.vit.encode` (files written before it was recorded: none)."""
    import timm
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    vit = timm.create_model(meta["timm_model"], pretrained=False, **json.loads(meta["timm_kwargs"]))
    vit.load_state_dict(load_file(str(path)), strict=True)
    spec = json.loads(meta["input"])
    vit.input_norm = (float(spec.get("mean", 0.0)), float(spec.get("std", 1.0)))
    return vit.eval()
