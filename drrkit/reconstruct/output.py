"""Writing a reconstruction: NIfTI with the honest affine, the JSON report, a PNG of slices, and
(for model-predicted projections) a PNG of predicted beside true views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from drrkit.reconstruct.grid import OutputGrid


def write_nifti(volume: np.ndarray, grid: OutputGrid, path: str | Path, description: str = "") -> Path:
    """float32 NIfTI whose affine (sform and qform, scanner/RAS+ mm) is `grid.affine`, so the
    volume overlays the source CT in any viewer."""
    import nibabel as nib

    path = Path(path)
    if volume.shape != tuple(grid.shape):
        raise ValueError(f"{path}: volume shape {volume.shape} differs from grid shape {grid.shape}")
    img = nib.Nifti1Image(np.asarray(volume, dtype=np.float32), grid.affine)
    img.set_sform(grid.affine, code=1)
    img.set_qform(grid.affine, code=1)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = description[:79].encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_slices_figure(path: str | Path, grid: OutputGrid, recon: np.ndarray, truth: np.ndarray | None = None,
                       title: str = "") -> Path:
    """Axial, coronal and sagittal slices through the grid centre, in radiological display
    (RAS voxel order, patient's left on the image right), reconstruction beside truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [("reconstruction", recon)] + ([("truth", truth), ("difference", recon - truth)]
                                             if truth is not None else [])
    hi = float(np.percentile(truth if truth is not None else recon, 99.9)) or 1.0
    fig, axes = plt.subplots(3, len(columns), figsize=(3.2 * len(columns), 9.0), squeeze=False)
    for col, (name, vol) in enumerate(columns):
        diff = name == "difference"
        for row, (view, image, aspect) in enumerate(_orthogonal(vol, grid)):
            ax = axes[row, col]
            ax.imshow(image, cmap="coolwarm" if diff else "gray", vmin=-hi / 4 if diff else 0,
                      vmax=hi / 4 if diff else hi, origin="lower", aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}: {view}", fontsize=9)
    return _save(fig, path, title)


def save_views_figure(path: str | Path, yaw_deg, predicted: np.ndarray, true: np.ndarray | None = None,
                      title: str = "", columns: int = 5) -> Path:
    """Up to `columns` views evenly spaced over the K views (K, H, W) in the model's [0, 1] space:
    predicted, and with `true` the true view and the difference below it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.unique(np.round(np.linspace(0, len(predicted) - 1, min(columns, len(predicted)))).astype(int))
    rows = [("predicted", predicted)] + ([("true", true), ("difference", predicted - true)] if true is not None else [])
    fig, axes = plt.subplots(len(rows), len(picks), figsize=(2.4 * len(picks), 2.5 * len(rows)), squeeze=False)
    for r, (name, images) in enumerate(rows):
        diff = name == "difference"
        for c, k in enumerate(picks):
            ax = axes[r, c]
            ax.imshow(images[k], cmap="coolwarm" if diff else "gray", vmin=-0.5 if diff else 0.0,
                      vmax=0.5 if diff else 1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} {float(yaw_deg[k]):+.0f}°", fontsize=9)
    return _save(fig, path, title)


def _save(fig, path: str | Path, title: str) -> Path:
    """Title, lay out, write (folders made) and close a figure."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _orthogonal(volume: np.ndarray, grid: OutputGrid):
    """(name, 2-D image, aspect) for the three central slices, reoriented to RAS voxel order and
    flipped left-right for radiological display; aspect from the voxel spacing."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(grid.affine)
    ras = nib.orientations.apply_orientation(volume, ornt)
    sp = np.empty(3)
    sp[ornt[:, 0].astype(int)] = grid.spacing  # input axis i becomes RAS axis ornt[i, 0]
    ci, cj, ck = (s // 2 for s in ras.shape)
    return [("axial", ras[::-1, :, ck].T, sp[1] / sp[0]),
            ("coronal", ras[::-1, cj, :].T, sp[2] / sp[0]),
            ("sagittal", ras[ci, :, :].T, sp[2] / sp[1])]
