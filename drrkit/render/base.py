"""The renderer interface every backend implements, and device resolution.

A backend is built once per process (or Dask worker) for one detector/volume/intensity setup and
then renders many CTs: `render(ct, poses)` yields `(start, images)` batches, images being float32
numpy arrays (B, H, W) in the intensity units the recipe names. Batching is the backend's job and
is bounded by the memory it can see, so corpus size never changes peak memory.
"""

from __future__ import annotations

from typing import Iterator, Protocol

import numpy as np

from drrkit.ct.volume import CTVolume
from drrkit.geometry.poses import PoseSet


class Renderer(Protocol):
    name: str
    device: str

    def render(self, ct: CTVolume, poses: PoseSet, field: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (first view index, float32 images (B, H, W)) until all poses are rendered.

        Images are line integrals (mm) of DiffDRR's density of `ct`, or of `field` when given (a
        volume on the CT's grid, e.g. attenuation μ or a structure indicator): same frame, same rays."""
        ...

    def describe(self) -> dict:
        """JSON-safe description recorded in the store (backend, device, options)."""
        ...


class DensityUndefined(ValueError):
    """DiffDRR's density of a CT is undefined (no voxel in (-800, 350] HU) or constant (every voxel
    above -800 HU holds one value, so normalising divides 0 by 0): its DRRs would be NaN. The
    pipeline records the CT as failed (`no_contrast`, drrkit/ct/errors.py)."""


def resolve_device(device: str) -> str:
    """'auto' → 'cuda' when available else 'cpu'. Asking for CUDA without one is an error, never
    a silent fall-back to the CPU."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} was asked for but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], got {device!r}")
    return device


def render_all(renderer: Renderer, ct: CTVolume, poses: PoseSet, field: np.ndarray | None = None) -> np.ndarray:
    """Convenience: every view of one CT as one (N, H, W) array."""
    parts = [images for _, images in renderer.render(ct, poses, field)]
    return np.concatenate(parts, axis=0)
