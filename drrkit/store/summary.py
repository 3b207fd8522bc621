"""What `drrkit inspect` shows: a summary of a store and a contact-sheet preview."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from drrkit.store.reader import Corpus


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
        "cts": table,
    }


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
    fig, axes = plt.subplots(len(done), len(picks), figsize=(2 * len(picks), 2.2 * len(done)), squeeze=False)
    rot = corpus.root["rotation"]
    for r, ct_index in enumerate(done):
        base = corpus.ct_rows(ct_index).start
        for c, view in enumerate(picks):
            img = corpus.image(base + view)
            lo, hi = np.nanpercentile(img, [1, 99])
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
            yaw = np.degrees(rot[base + view][0])
            ax.set_title(f"{table[ct_index]['id'][:18]}\nview {view}, z-rot {yaw:+.0f}°", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
