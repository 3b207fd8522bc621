"""Reading a corpus store: `open_corpus(path)` and the re-render recipe for any stored image."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

import numpy as np
import zarr

from drrkit.geometry.detector import Detector
from drrkit.geometry.poses import PoseSet
from drrkit.geometry.recipe import Recipe
from drrkit.render.intensity import finish, hu_to_mu
from drrkit.store import schema
from drrkit.store.errors import StoreError


def open_corpus(path: str | Path) -> "Corpus":
    return Corpus(path)


class Corpus:
    """Read-only view of a corpus store. Arrays are zarr arrays (lazy); tables are numpy."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise StoreError(f"{self.path}: no such store")
        try:
            self.root = zarr.open_group(str(self.path), mode="r")
            self.attrs = dict(self.root.attrs)[schema.ATTRS_KEY]
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise StoreError(f"{self.path}: not a drrkit corpus store ({exc})") from exc
        version = self.attrs.get("schema_version")
        if version != schema.SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema version {version}, this drrkit reads {schema.SCHEMA_VERSION}")

    # --- shape of the corpus -------------------------------------------------------------
    @property
    def images(self) -> zarr.Array:
        return self.root["images"]

    @property
    def views_per_ct(self) -> int:
        return int(self.attrs["views_per_ct"])

    @property
    def n_cts(self) -> int:
        return int(self.attrs["n_cts"])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def recipe(self) -> Recipe:
        return Recipe.from_dict(self.attrs["recipe"], where=f"{self.path} attributes")

    @property
    def detector(self) -> Detector:
        fields = {f.name for f in dataclasses.fields(Detector)}  # not the projector's own settings
        return Detector(**{k: v for k, v in self.attrs["detector"].items() if k in fields})

    # --- per-CT table ----------------------------------------------------------------------
    def ct_table(self) -> list[dict]:
        """One dict per CT: id, source, kind, status, error_kind, error, shape, spacing, ..."""
        if self.n_cts == 0:
            return []
        cts = self.root["cts"]
        names = (*schema.CT_STRING_ARRAYS, *(n for n in schema.CT_OPTIONAL_STRING_ARRAYS if n in cts),
                 *schema.CT_NUMERIC_ARRAYS)
        cols = {name: cts[name][:] for name in names}
        return [{name: _plain(col[i]) for name, col in cols.items()} for i in range(self.n_cts)]

    def ct_rows(self, ct_index: int) -> slice:
        return slice(ct_index * self.views_per_ct, (ct_index + 1) * self.views_per_ct)

    def ct_index_of(self, ct_id: str) -> int:
        ids = list(self.root["cts/id"][:])
        if ct_id not in ids:
            raise KeyError(f"{self.path}: no CT with id {ct_id!r}")
        return ids.index(ct_id)

    def extra_columns(self) -> dict[str, list[str]]:
        """The manifest columns carried into the store (cts/extra/<column>), one value per CT."""
        extra = self.root["cts/extra"] if "cts/extra" in self.root else None
        if extra is None:
            return {}
        return {name: [str(v) for v in extra[name][:]] for name in sorted(extra.array_keys())}

    def header_override(self, ct_index: int):
        """The manifest's header correction this CT was read with (cts/extra/rescale_slope,
        rescale_intercept, spacing; drrkit/ct/overrides.py), or None."""
        from drrkit.ct.overrides import COLUMNS, parse_override

        extra = self.root["cts/extra"] if "cts/extra" in self.root else None
        if extra is None:
            return None
        return parse_override({c: str(extra[c][ct_index]) for c in COLUMNS if c in extra})

    # --- per-row data ------------------------------------------------------------------------
    def poses(self, rows=slice(None)) -> PoseSet:
        return PoseSet(np.asarray(self.root["rotation"][rows]).reshape(-1, 3),
                       np.asarray(self.root["translation"][rows]).reshape(-1, 3))

    def image(self, row: int) -> np.ndarray:
        return np.asarray(self.images[row], dtype=np.float32)

    # --- re-rendering with plain DiffDRR ------------------------------------------------------
    def diffdrr_read_kwargs(self) -> dict:
        vol = self.attrs["volume"]
        return {"orientation": vol["orientation"],
                "bone_attenuation_multiplier": vol["bone_attenuation_multiplier"],
                "center_volume": vol["center_volume"]}

    @property
    def masks(self) -> zarr.Array | None:
        """(N, C, H, W) uint8 projected structure masks, if the recipe asked for them."""
        return self.root["masks"] if "masks" in self.root else None

    @property
    def bboxes(self) -> zarr.Array | None:
        return self.root["bboxes"] if "bboxes" in self.root else None

    @property
    def mask_channels(self) -> list[str]:
        return list((self.attrs.get("masks") or {}).get("channels", []))

    def _diffdrr_subject(self, source: str, ct_index: int):
        """DiffDRR's subject for a stored CT: `diffdrr.data.read` of the file or series folder itself
        (an independent reader: torchio/ITK), except where that would read something else: a
        folder holding more than this one series (or stray slices), or a file whose header a
        manifest corrected. Those get the HU and affine drrkit read, as a torchio image."""
        import torch
        from diffdrr.data import read
        from torchio import ScalarImage

        from drrkit.ct.discover import discover_cts, load_recorded_ct

        override = self.header_override(ct_index)
        if override is None and (Path(source).is_file() or _one_clean_series(discover_cts(source, jobs=1))):
            return read(source, **self.diffdrr_read_kwargs())
        ct = load_recorded_ct(source, str(self.root["cts/id"][ct_index]), override)
        image = ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(ct.hu))[None], affine=ct.affine)
        return read(image, **self.diffdrr_read_kwargs())

    def integrate_with_diffdrr(self, subject, rows, device: str = "cpu", views_per_call: int | None = None,
                               patch_size: int | None = None) -> np.ndarray:
        """(V, H, W) line integrals of `subject`'s density along stored rows' rays: DiffDRR's DRR
        from the recorded detector and pose convention, `views_per_call` views a call."""
        import torch
        from diffdrr.drr import DRR

        drr = DRR(subject, **self.attrs["detector"], patch_size=patch_size).to(device)
        pose = self.poses(rows)
        step = views_per_call or len(pose.rotations)
        parts = []
        for start in range(0, len(pose.rotations), step):
            with torch.no_grad():
                img = drr(torch.tensor(pose.rotations[start:start + step], dtype=torch.float32, device=device),
                          torch.tensor(pose.translations[start:start + step], dtype=torch.float32, device=device),
                          parameterization=self.attrs["pose_convention"]["parameterization"],
                          convention=self.attrs["pose_convention"]["convention"])
            parts.append(img[:, 0].cpu().numpy())
        return np.concatenate(parts)

    def rerender_with_diffdrr(self, rows, device: str = "cpu", ct_path: str | None = None,
                              views_per_call: int | None = None, patch_size: int | None = None) -> np.ndarray:
        """Render stored rows of one CT again with plain DiffDRR, from the store's metadata alone
        (the CT file named in cts/source, unless `ct_path` points at a moved copy). For μ-based
        intensities DiffDRR's density is replaced by μ from the recorded coefficients and the
        recorded transform applied; Poisson noise is not re-drawn (noise-free expectation). A CT
        read with a manifest header correction (cts/extra/rescale_*, spacing) is given to DiffDRR
        as the corrected HU volume and affine, since its file's header does not describe it; so is
        a DICOM series whose folder holds other series or stray slices (DiffDRR would read the
        folder as one series).
        `views_per_call` and DiffDRR's own `patch_size` (rays per call ≈ patch_size²) bound memory:
        Siddon on one 512² view of a 512×512×133 CT needs several GB at once (None: all in one)."""
        import torch

        rows = np.atleast_1d(np.arange(len(self))[rows])
        ct_idx = np.unique(self.root["ct_index"][rows.min():rows.max() + 1])
        if len(ct_idx) != 1 or ct_idx[0] < 0:
            raise StoreError(f"{self.path}: rows must belong to one rendered CT, got CT indices {ct_idx}")
        source = ct_path or str(self.root["cts/source"][int(ct_idx[0])])
        subject = self._diffdrr_subject(source, int(ct_idx[0]))
        spec = self.recipe.intensity
        if spec.kind != "density":
            mu = hu_to_mu(subject.volume.data[0].numpy(), spec.mu_water, spec.mu_bone, spec.hu_bone)
            subject.density.set_data(torch.from_numpy(mu)[None])
        line_integrals = self.integrate_with_diffdrr(subject, rows, device, views_per_call, patch_size)
        if spec.kind in ("density", "mu"):
            return line_integrals
        return finish(replace(spec, photons=None), line_integrals, "")


def _one_clean_series(discovered) -> bool:
    sources, errors = discovered
    return len(sources) == 1 and not errors


def _plain(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def source_path(source: str, store: str | Path) -> Path:
    """Where the CT named by a `cts/source` entry is. Stores record absolute paths; older ones
    hold the path as typed, relative to the directory that run started in: such a path is taken
    as it is when it exists from here, else beside the store (where the CT folder usually sits)."""
    path = Path(source)
    if path.is_absolute() or path.exists():
        return path
    beside = Path(store).absolute().parent / path
    return beside if beside.exists() else path
