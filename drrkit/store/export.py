"""`drrkit export`: a store's images as 16-bit PNG or DICOM (DX) files for tools that want files.

Each image is mapped linearly onto the full uint16 range: raw = pixel ·
slope + intercept, with slope/intercept written per file (DICOM RescaleSlope/RescaleIntercept;
for PNG in `index.csv`), so the stored floats are recoverable to 1/65535 of each image's range.
DICOM files carry the geometry in standard tags (ImagerPixelSpacing, DistanceSourceToDetector,
DistanceSourceToPatient, PositionerPrimaryAngle = yaw in degrees) and the exact pose in a private
block (group 0x0011, creator "drrkit"): rotation (ZXY, radians), translation (mm), convention.
A store with masks also gets masks/*.png and COCO annotations.json (mask_export.py).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drrkit.store.mask_export import MaskExporter
from drrkit.store.reader import Corpus
from drrkit.store.schema import DONE

FORMATS = ("png", "dicom")


def to_uint16(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(pixels, slope, intercept) with raw ≈ pixels·slope + intercept."""
    lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    pixels = np.round((image - lo) / slope).clip(0, 65535).astype(np.uint16)
    return pixels, slope, lo


@dataclass(frozen=True)
class Exported:
    images: int
    mask_files: int = 0
    annotations: Path | None = None  # COCO annotations.json, for a store with masks


def export_store(corpus: Corpus, out: str | Path, fmt: str, ct_ids: list[str] | None = None,
                 masks: bool | None = None) -> Exported:
    """Write every view of the rendered CTs (or of `ct_ids`), and with `masks` (default: when the
    store has them) each view's structure masks and the COCO annotations (mask_export.py)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if masks and corpus.masks is None:
        raise ValueError(f"{corpus.path}: this store has no masks (its recipe has no 'masks:' section)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = corpus.ct_table()
    wanted = set(ct_ids) if ct_ids else None
    if wanted and not wanted <= {r["id"] for r in table}:
        raise ValueError(f"{corpus.path}: unknown CT id(s) {sorted(wanted - {r['id'] for r in table})}")
    exporter = None
    if corpus.masks is not None and masks is not False:
        det = corpus.detector
        exporter = MaskExporter(out, corpus.mask_channels, det.height, det.width,
                                {"description": f"drrkit export of {corpus.path}", "recipe": corpus.recipe.name,
                                 "box_format": "COCO [x, y, width, height] in pixels"})
    index_rows, mask_files = [], 0
    extras = corpus.extra_columns()  # manifest columns (reports, labels...), as ct_<column>
    for ct_index, row in enumerate(table):
        if row["status"] != DONE or (wanted and row["id"] not in wanted):
            continue
        rows = corpus.ct_rows(ct_index)
        carried = {f"ct_{name}": values[ct_index] for name, values in extras.items()}
        for r in range(rows.start, rows.stop):
            index_rows.append({**_write_one(corpus, out, fmt, row["id"], r), **carried})
            if exporter is not None:
                mask_files += exporter.add(index_rows[-1]["file"], row["id"], index_rows[-1]["view_index"],
                                           np.asarray(corpus.masks[r]), np.asarray(corpus.bboxes[r]))
    with (out / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(index_rows[0]) if index_rows else ["file"])
        writer.writeheader()
        writer.writerows(index_rows)
    return Exported(len(index_rows), mask_files, exporter.write() if exporter else None)


def _write_one(corpus: Corpus, out: Path, fmt: str, ct_id: str, row: int) -> dict:
    view = int(corpus.root["view_index"][row])
    pixels, slope, intercept = to_uint16(corpus.image(row))
    rotation = np.asarray(corpus.root["rotation"][row], dtype=float)
    translation = np.asarray(corpus.root["translation"][row], dtype=float)
    name = f"{ct_id}_view{view:04d}.{'png' if fmt == 'png' else 'dcm'}"
    if fmt == "png":
        from PIL import Image

        Image.fromarray(pixels).save(out / name)  # 16-bit greyscale (mode I;16)
    else:
        from drrkit.store.dicom_export import write_dicom

        write_dicom(out / name, pixels, slope, intercept, corpus, ct_id, view, rotation, translation)
    return {"file": name, "ct_id": ct_id, "view_index": view, "row": row, "rescale_slope": slope,
            "rescale_intercept": intercept, "rotation_zxy_rad": " ".join(f"{v:.9g}" for v in rotation),
            "translation_mm": " ".join(f"{v:.9g}" for v in translation)}
