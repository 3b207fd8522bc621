"""Real chest radiographs on disk: the "real" domain of X-WIN's MIM and domain losses, and
labelled folders for linear probing.

Files are found recursively (sorted, so the order is reproducible): PNG and JPEG through PIL,
DICOM (.dcm/.dicom) through pydicom with the modality LUT (rescale slope/intercept) and the VOI
LUT/window applied and MONOCHROME1 inverted, so bone is bright as in the DRRs. Colour images are
converted to grey. Every image then gets the same display transform and resize as the simulated
views (drrkit.train.transforms). An unreadable file raises `RealImageError` naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from drrkit.train.transforms import to_model_input

PIL_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES


class RealImageError(ValueError):
    """A radiograph file or folder cannot be used; the message names it and says why."""


def find_images(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise RealImageError(f"{root}: no such folder of radiographs")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise RealImageError(f"{root}: no radiographs found (looked for {', '.join(IMAGE_SUFFIXES)}, recursively)")
    return files


def read_radiograph(path: str | Path) -> np.ndarray:
    """One radiograph as float32 (H, W), bright = dense."""
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            return _read_dicom(path)
        return _read_pil(path)
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        raise RealImageError(f"{path}: cannot read radiograph ({exc})") from exc


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
            img = img.convert("L")
        return np.asarray(img, dtype=np.float32)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        arr = arr[0]
    if int(getattr(ds, "SamplesPerPixel", 1)) > 1:
        arr = arr.mean(axis=-1)
    else:
        arr = apply_voi_lut(apply_modality_lut(arr, ds), ds)
    arr = np.asarray(arr, dtype=np.float32)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = arr.max() + arr.min() - arr
    return arr


class RealRadiographs(Dataset):
    """Real radiographs as model inputs; keys are ints or (step, epoch, index) from
    `StepBatchSampler`. Returns image (1, S, S), index, step."""

    def __init__(self, paths: list[Path], img_size: int, intensity: str = "minmax"):
        if not paths:
            raise RealImageError("no radiographs given")
        self.paths, self.img_size, self.intensity = list(paths), img_size, intensity

    @classmethod
    def from_folder(cls, root, img_size: int, intensity: str = "minmax") -> "RealRadiographs":
        return cls(find_images(root), img_size, intensity)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key) -> dict:
        step, _, index = (0, 0, int(key)) if np.isscalar(key) else (int(k) for k in key)
        image = to_model_input(read_radiograph(self.paths[index]), self.img_size, self.intensity)
        return {"image": image, "index": index, "step": step}


def labelled_folder(root: str | Path) -> tuple[list[Path], np.ndarray, list[str]]:
    """A probing set: one subfolder per class (searched recursively) → (paths, labels, classes)."""
    root = Path(root)
    if not root.is_dir():
        raise RealImageError(f"{root}: no such folder")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = find_images(root / name)
        paths += files
        labels += [k] * len(files)
    if len(classes) < 2:
        raise RealImageError(f"{root}: need at least two class subfolders, found {classes}")
    return paths, np.asarray(labels), classes


def stack_images(dataset: Dataset, indices=None) -> torch.Tensor:
    """(K, 1, S, S) of the given items (all by default) of a RealRadiographs-like dataset."""
    indices = range(len(dataset)) if indices is None else indices
    return torch.stack([dataset[i]["image"] for i in indices])
