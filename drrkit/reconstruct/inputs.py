"""What a reconstruction reads from a corpus store: one CT's images, their rays, and its grid.

Every error names the store, the CT and the reason (unknown id, CT not rendered, NaN rows, too
few views, a source CT that changed since it was rendered).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drrkit.ct.volume import CTVolume
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.grid import OutputGrid

MIN_VIEWS = 3


class ReconstructError(ValueError):
    """Input that cannot be reconstructed; the message names the store or file and the reason."""


@dataclass(frozen=True, eq=False)
class Projections:
    """One CT's views from a store, ready for `fdk` / `reconstruct_iterative`."""

    images: np.ndarray  # (N, H, W) float32, line integrals in mm of DiffDRR's normalised density
    geometry: ConeBeamGeometry
    ct_grid: OutputGrid  # the source CT's own grid (shape, affine as rendered)
    ct_id: str
    ct_index: int
    source: str  # cts/source: file or DICOM folder read at render time
    kind: str
    checksum: str
    bone_attenuation_multiplier: float
    where: str  # "<store>: CT '<id>'" for messages
    override: object = None  # the manifest's header correction the CT was read with (ct/overrides.py)

    def describe(self) -> dict:
        return {"ct_id": self.ct_id, "ct_index": self.ct_index, "source": self.source, "views": len(self.images),
                "detector": [self.geometry.height, self.geometry.width]}


def load_projections(store: str | Path, ct_id: str | None = None) -> Projections:
    """The images, rays and CT grid of CT `ct_id` (default: the store's only CT)."""
    from drrkit.store import StoreError, open_corpus, source_path
    from drrkit.store.schema import DONE

    try:
        corpus = open_corpus(store)
        ids = [str(v) for v in corpus.root["cts/id"][:]]
        index = _ct_index(corpus.path, ids, ct_id)
        cts = corpus.root["cts"]
        status = str(cts["status"][index])
        where = f"{corpus.path}: CT {ids[index]!r}"
        if status != DONE:
            reason = str(cts["error"][index]) if "error" in cts else ""
            raise ReconstructError(f"{where} is {status!r}, not rendered{': ' + reason if reason else ''}")
        rows = corpus.ct_rows(index)
        images = np.asarray(corpus.images[rows], dtype=np.float32)
        poses = corpus.poses(rows)
        detector = corpus.detector
        volume = corpus.attrs["volume"]
        kind = corpus.attrs.get("intensity", {}).get("kind", "density")
    except (StoreError, KeyError) as exc:
        raise ReconstructError(f"{store}: cannot read the store ({exc})") from exc
    if kind != "density":
        raise ReconstructError(f"{where}: images are {kind!r}; reconstruction expects line integrals of density")
    if len(images) < MIN_VIEWS:
        raise ReconstructError(f"{where}: {len(images)} views; reconstruction needs at least {MIN_VIEWS}")
    bad = np.flatnonzero(~np.isfinite(images).all(axis=(1, 2)))
    if len(bad):
        raise ReconstructError(f"{where}: {len(bad)} of {len(images)} views hold NaN/inf "
                               f"(first: view {int(bad[0])}); the CT's rows are not fully rendered")
    grid = OutputGrid.of_ct(np.asarray(cts["shape"][index]), np.asarray(cts["affine"][index]))
    geometry = ConeBeamGeometry.from_poses(poses, detector, volume["orientation"])
    return Projections(images=images, geometry=geometry, ct_grid=grid, ct_id=ids[index], ct_index=index,
                       source=str(source_path(str(cts["source"][index]), store)), kind=str(cts["kind"][index]),
                       checksum=str(cts["checksum"][index]),
                       bone_attenuation_multiplier=float(volume["bone_attenuation_multiplier"]), where=where,
                       override=corpus.header_override(index))


def _ct_index(path: Path, ids: list[str], ct_id: str | None) -> int:
    if not ids:
        raise ReconstructError(f"{path}: the store holds no CTs")
    if ct_id is None:
        if len(ids) > 1:
            raise ReconstructError(f"{path}: the store holds {len(ids)} CTs; choose one with --ct "
                                   f"(ids: {', '.join(ids[:10])}{', ...' if len(ids) > 10 else ''})")
        return 0
    if ct_id not in ids:
        raise ReconstructError(f"{path}: no CT with id {ct_id!r} (ids: {', '.join(ids[:10])}"
                               f"{', ...' if len(ids) > 10 else ''})")
    return ids.index(ct_id)


def load_source_ct(proj: Projections, ct_path: str | Path | None = None) -> CTVolume:
    """The CT the images were rendered from (cts/source, or a moved copy at `ct_path`), checked
    against the store's checksum so that the truth is the data that was rendered."""
    from drrkit.ct import CTReadError
    from drrkit.ct.discover import load_recorded_ct

    path = Path(ct_path or proj.source)
    try:
        ct = load_recorded_ct(path, proj.ct_id, proj.override)
    except (CTReadError, OSError) as exc:
        raise ReconstructError(f"{proj.where}: cannot read the source CT {path} ({exc})") from exc
    if proj.checksum and not ct.matches_checksum(proj.checksum):
        raise ReconstructError(f"{proj.where}: the source CT {path} differs from the one rendered "
                               f"(checksum mismatch): no trustworthy truth")
    return ct
