"""StoredVoxels: a CT's voxels as the file stores them (small integers) and the rescale to HU.

Most CTs store int16 values (NIfTI) or 12-16-bit integers (DICOM) with a linear rescale to HU.
Keeping them in that form until the renderer needs HU halves the bytes a worker holds per CT and
copies to the GPU (2 instead of 4 per voxel), and on CUDA the float32 HU are made on the device
instead of by a host core.

The rescale is done exactly as the host readers do it, so the HU are bit for bit the same whichever
side computes them: values converted to `compute` (float32 for a NIfTI header's float32 factors,
float64 for a manifest's or a DICOM slice's), multiplied by `slope` unless it is 1, `inter` added
unless it is 0, then cast to float32 (nibabel's `apply_read_scaling` followed by astype(float32);
tests/ct/test_stored.py checks both paths against it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Integer types a device upload keeps (torch converts each to float on any device). uint16 values
# below 2^15 are narrowed to int16 at construction (same values, a type every kernel takes).
DEVICE_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
# Voxels per block when HU are streamed (checksum): 4 MiB of float32, which stays in cache.
BLOCK_VOXELS = 1 << 20


@dataclass(frozen=True, eq=False)
class StoredVoxels:
    """HU = float32(rescale(values)); `values` (I, J, K) in the volume's voxel order."""

    values: np.ndarray
    slope: float
    inter: float
    compute: np.dtype  # float32 or float64: the type the rescale is computed in

    @classmethod
    def of(cls, values: np.ndarray, slope, inter, compute) -> StoredVoxels | None:
        """The stored form of integer `values`, or None where there is no gain (float voxels,
        foreign byte order, types wider than 16 bits)."""
        values = np.asarray(values)
        if values.dtype.kind not in "iu" or not values.dtype.isnative or values.dtype.itemsize > 2:
            return None
        if not (values.flags.c_contiguous or values.flags.f_contiguous):
            values = np.ascontiguousarray(values)
        if values.dtype == np.uint16:
            if values.size and int(values.max()) > np.iinfo(np.int16).max:
                return None
            values = values.view(np.int16)  # same bit patterns, same values below 2^15
        compute = np.dtype(compute)
        if compute not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"rescale must be computed in float32 or float64, got {compute}")
        # factors as the compute type holds them: what both paths multiply and add
        return cls(values, float(compute.type(slope)), float(compute.type(inter)), compute)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.values.shape)

    def rescale(self, values: np.ndarray) -> np.ndarray:
        """float32 HU of some of the stored values (numpy, on the host)."""
        out = values.astype(self.compute)
        if self.slope != 1:
            out *= self.compute.type(self.slope)
        if self.inter != 0:
            out += self.compute.type(self.inter)
        return out.astype(np.float32, copy=False)

    def hu(self) -> np.ndarray:
        """The whole volume in float32 HU, in the values' memory order (Fortran stays Fortran)."""
        order = "F" if self.values.flags.f_contiguous and not self.values.flags.c_contiguous else "C"
        out = np.empty(self.values.shape, dtype=np.float32, order=order)
        flat_in, flat_out = self.values.ravel(order="K"), out.ravel(order="K")
        for start in range(0, flat_in.size, BLOCK_VOXELS):
            block = slice(start, start + BLOCK_VOXELS)
            flat_out[block] = self.rescale(flat_in[block])
        return out

    def hu_blocks(self):
        """float32 HU of the values in first-axis-fastest (Fortran) order, a block at a time: what
        a checksum hashes, without the whole float32 volume in memory."""
        flat = np.asfortranarray(self.values).T.ravel()  # Fortran bytes, no copy if already F
        for start in range(0, flat.size, BLOCK_VOXELS):
            yield self.rescale(flat[start:start + BLOCK_VOXELS])

    def hu_range(self) -> tuple[float, float]:
        """(min, max) HU. Exact: the rescale is monotonic in float arithmetic, so the extremes of the
        HU are the rescaled extremes of the values."""
        ends = self.rescale(np.array([self.values.min(), self.values.max()], dtype=self.values.dtype))
        return float(ends.min()), float(ends.max())

    def device_uploadable(self) -> bool:
        return self.values.dtype in DEVICE_DTYPES

    def to_device(self, device):
        """The stored values as a tensor on `device` (the copy a renderer uploads)."""
        import warnings

        import torch

        values = self.values  # contiguous (see `of`): from_numpy takes either order
        with warnings.catch_warnings():  # a read-only buffer (decompressed bytes): only read here
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.from_numpy(values).to(device)

    def hu_tensor(self, values):
        """float32 HU of `to_device`'s tensor, computed where it lies, bit for bit `hu()`."""
        import torch

        out = values.to(getattr(torch, self.compute.name))
        if self.slope != 1:
            out.mul_(self.slope)
        if self.inter != 0:
            out.add_(self.inter)
        return out.to(torch.float32)
