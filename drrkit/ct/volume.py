"""CTVolume: the one in-memory CT type every reader returns and every renderer consumes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import xxhash

# Tags the checksum's definition (checksum below). Older stores hold "sha256f:" values (SHA-256 of
# the same bytes) or bare hex (SHA-256 of C-order values, the first stores); both still match.
CHECKSUM_PREFIX = "xxh128f:"
SHA256_PREFIX = "sha256f:"


@dataclass(frozen=True, eq=False)
class CTVolume:
    """A CT in Hounsfield units with its voxel→world map.

    `hu` is float32 with shape (I, J, K) in voxel index order; `affine` (4×4, float64) maps
    voxel indices (i, j, k, 1) to RAS+ world millimetres, exactly as a NIfTI qform/sform does.
    `id` is a stable identifier (file stem or SeriesInstanceUID-derived); `source` the path read.
    """

    hu: np.ndarray
    affine: np.ndarray
    id: str
    source: str
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.hu.ndim != 3:
            raise ValueError(f"{self.source}: CTVolume needs a 3D array, got shape {self.hu.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"{self.source}: affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each voxel axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def nbytes(self) -> int:
        return int(self.hu.nbytes)

    def checksum(self) -> str:
        """'xxh128f:' + XXH3-128 of the HU values (float32, first voxel axis fastest: the NIfTI
        on-disk order, so a volume read from NIfTI is hashed in place) and then the affine (float64).
        Identifies the exact data that was rendered, whatever the array's memory layout. XXH3
        rather than SHA-256: it names data, it guards against no adversary, and it costs 0.01
        instead of 0.17 CPU-seconds for a 512x512x300 CT (benchmarks/bench_ct_read.py)."""
        return CHECKSUM_PREFIX + self._digest(xxhash.xxh3_128(), self._fortran_bytes())

    def matches_checksum(self, recorded: str) -> bool:
        """Whether `recorded` (a store's cts/checksum) names this data, under any definition a
        drrkit store has used: 'xxh128f:', 'sha256f:' (same bytes, SHA-256) or the bare-hex
        SHA-256 of C-order values that the first stores hold."""
        if recorded.startswith(CHECKSUM_PREFIX):
            return recorded == self.checksum()
        if recorded.startswith(SHA256_PREFIX):
            return recorded == SHA256_PREFIX + self._digest(hashlib.sha256(), self._fortran_bytes())
        return recorded == self._digest(hashlib.sha256(), np.ascontiguousarray(self.hu, dtype=np.float32))

    def _fortran_bytes(self) -> np.ndarray:
        # .T of a Fortran-order array is a C-order buffer of the same bytes
        return np.asfortranarray(self.hu, dtype=np.float32).T

    def _digest(self, h, values: np.ndarray) -> str:
        h.update(values)  # the buffer itself, no bytes copy
        h.update(np.ascontiguousarray(self.affine, dtype=np.float64).tobytes())
        return h.hexdigest()
