"""CTVolume: the one in-memory CT type every reader returns and every renderer consumes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

# Tags the checksum's definition (checksum below); bare hex values come from drrkit 0.1.0 stores.
CHECKSUM_PREFIX = "sha256f:"


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
        """'sha256f:' + SHA-256 of the HU values (float32, first voxel axis fastest: the NIfTI
        on-disk order, so a volume read from NIfTI is hashed in place) and then the affine (float64).
        Identifies the exact data that was rendered, whatever the array's memory layout."""
        # .T of a Fortran-order array is a C-order buffer of the same bytes
        return CHECKSUM_PREFIX + self._sha256(np.asfortranarray(self.hu, dtype=np.float32).T)

    def matches_checksum(self, recorded: str) -> bool:
        """Whether `recorded` (a store's cts/checksum) names this data; also takes the bare-hex
        SHA-256 of C-order values that drrkit 0.1.0 stores hold."""
        if recorded.startswith(CHECKSUM_PREFIX):
            return recorded == self.checksum()
        return recorded == self._sha256(np.ascontiguousarray(self.hu, dtype=np.float32))

    def _sha256(self, values: np.ndarray) -> str:
        h = hashlib.sha256()
        h.update(values)  # the buffer itself, no bytes copy
        h.update(np.ascontiguousarray(self.affine, dtype=np.float64).tobytes())
        return h.hexdigest()
