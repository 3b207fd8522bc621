"""A mask store's structures as files: one PNG per view and structure, and COCO annotations.

Detection and segmentation tools (pycocotools, detectron2, mmdetection, torchvision's
CocoDetection) read COCO JSON, and ChexGen-style box/mask conditioning is trained from boxes and
masks per image. `annotations.json` holds, per exported image, one annotation per structure whose
projected mask is non-empty: `bbox` [x, y, width, height] in pixels (the store's
[x_min, y_min, x_max, y_max) box; pixel i covers [i, i + 1)), `area` (mask pixels) and
`segmentation` as COCO's uncompressed RLE (column-major run lengths, starting with background),
so no polygon tracing loses pixels. Masks overlap (lungs and heart do in projection), hence one
annotation each, never a label image. `masks/<image stem>_<structure>.png` holds the same masks
as 8-bit 0/255 PNGs; an absent file means the mask is empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MASK_DIR = "masks"
COCO_FILE = "annotations.json"


def rle_counts(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE of a 2D mask: run lengths over the column-major (Fortran) pixel order,
    the first run counting background pixels (0 when the first pixel is foreground)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return [0, *runs] if flat[0] else runs


def rle_decode(counts: list[int], height: int, width: int) -> np.ndarray:
    """The boolean (height, width) mask of COCO uncompressed RLE `counts` (the inverse of rle_counts)."""
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE covers {flat.size} pixels, the image has {height * width}")
    return flat.reshape((height, width), order="F")


class MaskExporter:
    """Collects a COCO dataset while export_store writes images; `add` writes a view's mask PNGs."""

    def __init__(self, out: Path, channels: list[str], height: int, width: int, info: dict):
        self.out, self.channels, self.height, self.width = out, channels, height, width
        (out / MASK_DIR).mkdir(parents=True, exist_ok=True)
        self.coco = {"info": info, "images": [], "annotations": [],
                     "categories": [{"id": k + 1, "name": ch, "supercategory": "anatomy"}
                                    for k, ch in enumerate(channels)]}

    def add(self, file_name: str, ct_id: str, view: int, masks: np.ndarray, boxes: np.ndarray) -> int:
        """One exported image's (C, H, W) masks and (C, 4) boxes; returns the mask files written."""
        from PIL import Image

        image_id = len(self.coco["images"]) + 1
        self.coco["images"].append({"id": image_id, "file_name": file_name, "height": self.height,
                                    "width": self.width, "ct_id": ct_id, "view_index": view})
        stem = Path(file_name).stem
        written = 0
        for k, channel in enumerate(self.channels):
            mask = masks[k] != 0
            if not mask.any():
                continue
            Image.fromarray(mask.astype(np.uint8) * 255).save(self.out / MASK_DIR / f"{stem}_{channel}.png")
            written += 1
            x0, y0, x1, y1 = (float(v) for v in boxes[k])
            self.coco["annotations"].append({
                "id": len(self.coco["annotations"]) + 1, "image_id": image_id, "category_id": k + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": int(mask.sum()), "iscrowd": 0,
                "segmentation": {"size": [self.height, self.width], "counts": rle_counts(mask)}})
        return written

    def write(self) -> Path:
        path = self.out / COCO_FILE
        path.write_text(json.dumps(self.coco))
        return path
