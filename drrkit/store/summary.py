"""What `drrkit inspect` shows: a summary of a store and a contact-sheet preview."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from drrkit.store.reader import Corpus
from drrkit.store.schema import DONE


def summarize(corpus: Corpus) -> dict:
    table = corpus.ct_table()
    counts = Counter(row["status"] for row in table)
    a = corpus.attrs
    return {
        "path": str(corpus.path),
        "schema_version": a["schema_version"],
        "drrkit_version": a.get("drrkit_version"),
        "created": a.get("created"),
        "recipe": a["recipe"]["name"],
        "detector": a["detector"],
        "intensity": a["intensity"]["kind"],
        "intensity_units": a["intensity"]["units"],
        "pose_convention": f'{a["pose_convention"]["parameterization"]} {a["pose_convention"]["convention"]}',
        "views_per_ct": corpus.views_per_ct,
        "n_cts": corpus.n_cts,
        "n_rows": len(corpus),
        "image_dtype": a["image_dtype"],
        "status_counts": dict(counts),
        "masks": mask_summary(corpus, table),
        "cts": table,
    }


def mask_summary(corpus: Corpus, table: list[dict]) -> dict | None:
    """None for a store without masks; else its channels, threshold and, per channel, in how many
    rendered CTs a structure matched it (an unmatched channel's masks are empty, its boxes NaN)."""
    spec = corpus.attrs.get("masks")
    if corpus.masks is None or not spec:
        return None
    matched = [json.loads(row["mask_structures"]) for row in table if row["status"] == DONE and row["mask_structures"]]
    return {"channels": list(spec["channels"]), "threshold_mm": spec["threshold_mm"], "rendered_cts": len(matched),
            "cts_with_structure": {ch: sum(bool(m.get(ch)) for m in matched) for ch in spec["channels"]}}


def write_preview(corpus: Corpus, out: str | Path, max_cts: int = 6, views: int = 6) -> Path:
    """A PNG grid: one row per rendered CT, `views` evenly spaced views. Each tile is windowed
    to its own 1st–99th percentile for display only; stored values are untouched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = corpus.ct_table()
    done = [i for i, row in enumerate(table) if row["status"] == "done"][:max_cts]
    if not done:
        raise ValueError(f"{corpus.path}: no rendered CT to preview")
    cols = min(views, corpus.views_per_ct)
    picks = np.unique(np.linspace(0, corpus.views_per_ct - 1, cols).round().astype(int))
    legend_room = 0.5 if corpus.masks is not None else 0.0
    size = (max(6.0, 2.4 * len(picks)), 2.6 * len(done) * max(1.0, 3.0 / len(picks)) + legend_room)
    fig, axes = plt.subplots(len(done), len(picks), figsize=size, squeeze=False)
    rot = corpus.root["rotation"]
    for r, ct_index in enumerate(done):
        base = corpus.ct_rows(ct_index).start
        for c, view in enumerate(picks):
            img = corpus.image(base + view)
            lo, hi = np.nanpercentile(img, [1, 99])
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
            if corpus.masks is not None:
                _overlay_masks(ax, corpus, base + view)
            yaw = np.degrees(rot[base + view][0])
            ax.set_title(f"{table[ct_index]['id'][:18]}\nview {view}, z-rot {yaw:+.0f}°", fontsize=7)
            ax.axis("off")
    if corpus.masks is not None:
        _legend(fig, corpus.mask_channels)
    fig.tight_layout(rect=(0, legend_room / size[1], 1, 1))
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def _colour(k: int):
    import matplotlib

    return matplotlib.colormaps["tab10"](k % 10)


def _overlay_masks(ax, corpus: Corpus, row: int) -> None:
    """Each channel's mask outline and box, one colour per channel."""
    from matplotlib.patches import Rectangle

    masks = np.asarray(corpus.masks[row])
    boxes = np.asarray(corpus.bboxes[row])
    for k in range(masks.shape[0]):
        if masks[k].any():
            ax.contour(masks[k], levels=[0.5], colors=[_colour(k)], linewidths=0.6)
        if np.all(np.isfinite(boxes[k])):
            x0, y0, x1, y1 = boxes[k]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=_colour(k), linewidth=0.6, linestyle="--"))


def _legend(fig, channels: list[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=_colour(k), label=name) for k, name in enumerate(channels)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(channels), 8), fontsize=7, frameon=False)
