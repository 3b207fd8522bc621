"""CTVolume: the one in-memory CT type every reader returns and every renderer consumes."""

from __future__ import annotations

import hashlib

import numpy as np
import xxhash

from drrkit.ct.stored import StoredVoxels

# Tags the checksum's definition (checksum below). Older stores hold "sha256f:" values (SHA-256 of
# the same bytes) or bare hex (SHA-256 of C-order values, the first stores); both still match.
CHECKSUM_PREFIX = "xxh128f:"
SHA256_PREFIX = "sha256f:"


class CTVolume:
    """A CT in Hounsfield units with its voxel→world map.

    `hu` is float32 with shape (I, J, K) in voxel index order; `affine` (4×4, float64) maps
    voxel indices (i, j, k, 1) to RAS+ world millimetres, exactly as a NIfTI qform/sform does.
    `id` is a stable identifier (file stem or SeriesInstanceUID-derived); `source` the path read.

    A reader that has the file's integer voxels passes `stored` (drrkit/ct/stored.py) instead of
    `hu`: the float32 HU are then made on first use of `hu` (and kept), and a renderer may upload
    the stored values and rescale them on its device instead. Either way `hu` holds the same values.
    """

    __slots__ = ("_hu", "stored", "affine", "id", "source", "meta")

    def __init__(self, hu: np.ndarray | None = None, affine: np.ndarray | None = None, id: str = "ct",
                 source: str = "<memory>", meta: dict | None = None, *, stored: StoredVoxels | None = None):
        if hu is None and stored is None:
            raise ValueError(f"{source}: CTVolume needs HU values or stored voxels")
        if hu is not None and stored is not None:
            raise ValueError(f"{source}: give HU values or stored voxels, not both")
        shape = np.shape(hu) if hu is not None else stored.shape
        if len(shape) != 3:
            raise ValueError(f"{source}: CTVolume needs a 3D array, got shape {tuple(shape)}")
        affine = np.asarray(affine if affine is not None else np.eye(4))
        if affine.shape != (4, 4):
            raise ValueError(f"{source}: affine must be 4x4, got {affine.shape}")
        self._hu, self.stored = hu, stored
        self.affine, self.id, self.source = affine, id, source
        self.meta = {} if meta is None else meta

    def __repr__(self) -> str:
        form = f"stored {self.stored.values.dtype}" if self.stored is not None else "float32 HU"
        return f"CTVolume(id={self.id!r}, shape={self.shape}, {form}, source={self.source!r})"

    def with_id(self, ct_id: str) -> "CTVolume":
        """The same volume (arrays shared, not copied) under another id."""
        if self.stored is not None:
            return CTVolume(None, self.affine, ct_id, self.source, self.meta, stored=self.stored)
        return CTVolume(self._hu, self.affine, ct_id, self.source, self.meta)

    @property
    def hu(self) -> np.ndarray:
        if self._hu is None:
            self._hu = self.stored.hu()  # two threads may both compute it: same values, one kept
        return self._hu

    def hu_once(self) -> tuple[np.ndarray, bool]:
        """(float32 HU, whether the caller owns them) for a caller that needs them once (a renderer
        making its density): the kept HU if there are some (not the caller's to change), else made
        for this call and kept nowhere, so the caller may overwrite them and a worker does not hold
        them beside the stored values for the rest of the CT's task."""
        if self._hu is not None:
            return self._hu, False
        return self.stored.hu(), True

    @property
    def shape(self) -> tuple[int, int, int]:
        source = self._hu if self._hu is not None else self.stored.values
        return tuple(int(s) for s in source.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each voxel axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def nbytes(self) -> int:
        """Bytes of the float32 HU volume (whether or not it has been made yet)."""
        return int(np.prod(self.shape)) * 4

    def hu_range(self) -> tuple[float, float]:
        """(min, max) HU, from the stored values where there are some (no float32 volume made)."""
        if self._hu is None:
            return self.stored.hu_range()
        return float(np.min(self._hu)), float(np.max(self._hu))

    def checksum(self) -> str:
        """'xxh128f:' + XXH3-128 of the HU values (float32, first voxel axis fastest: the NIfTI
        on-disk order, so a volume read from NIfTI is hashed in place) and then the affine (float64).
        Identifies the exact data that was rendered, whatever the array's memory layout or whether
        it is held as stored voxels (then hashed a block of HU at a time). XXH3
        rather than SHA-256: it names data, it guards against no adversary, and it costs 0.01
        instead of 0.17 CPU-seconds for a 512x512x300 CT (benchmarks/bench_ct_read.py)."""
        return CHECKSUM_PREFIX + self._digest(xxhash.xxh3_128())

    def matches_checksum(self, recorded: str) -> bool:
        """Whether `recorded` (a store's cts/checksum) names this data, under any definition a
        drrkit store has used: 'xxh128f:', 'sha256f:' (same bytes, SHA-256) or the bare-hex
        SHA-256 of C-order values that the first stores hold."""
        if recorded.startswith(CHECKSUM_PREFIX):
            return recorded == self.checksum()
        if recorded.startswith(SHA256_PREFIX):
            return recorded == SHA256_PREFIX + self._digest(hashlib.sha256())
        h = hashlib.sha256(np.ascontiguousarray(self.hu, dtype=np.float32))
        h.update(np.ascontiguousarray(self.affine, dtype=np.float64).tobytes())
        return recorded == h.hexdigest()

    def _hu_fortran_blocks(self):
        if self._hu is None:
            yield from self.stored.hu_blocks()
        else:
            # .T of a Fortran-order array is a C-order buffer of the same bytes
            yield np.asfortranarray(self._hu, dtype=np.float32).T

    def _digest(self, h) -> str:
        for block in self._hu_fortran_blocks():
            h.update(block)  # the buffer itself, no bytes copy
        h.update(np.ascontiguousarray(self.affine, dtype=np.float64).tobytes())
        return h.hexdigest()
