"""One task = one CT: load it, sample its poses, render every view (and masks), write its own rows.

Tasks return a small `CTResult` (never tensors); the client alone updates the per-CT table.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field

from drrkit.ct import CTReadError, CTSource, load_ct
from drrkit.ct.errors import NoContrast
from drrkit.ct.fingerprint import source_fingerprint
from drrkit.geometry.recipe import Recipe
from drrkit.render import timing as render_timing
from drrkit.render.base import DensityUndefined, Renderer, render_all
from drrkit.render.intensity import finish, integrated_field
from drrkit.render.masks import project_masks
from drrkit.store import CorpusWriter


@dataclass
class CTResult:
    ct_index: int
    ct_id: str
    status: str  # "done" | "failed"
    error_kind: str = ""
    error: str = ""
    info: dict | None = None  # shape, spacing, affine, hu_min, hu_max, checksum (if the CT was read)
    views: int = 0
    timings: dict = field(default_factory=dict)  # seconds: load, render (render_* its parts), write
    worker: str = ""  # Dask worker name (empty in-process)
    finished: float = 0.0  # wall-clock time (epoch seconds) the task ended with its rows written


def render_ct(ct_index: int, source: CTSource, recipe: Recipe, renderer: Renderer,
              writer: CorpusWriter) -> CTResult:
    result = CTResult(ct_index, source.id, "failed")
    t0 = time.perf_counter()
    try:
        try:  # before the read: a file rewritten while it is read then differs at the next resume
            fingerprint = source_fingerprint(source, masks=recipe.masks is not None)
        except OSError:
            fingerprint = ""  # the read below fails with the reason, by the reader's own rules
        ct = load_ct(source)
        hu_min, hu_max = ct.hu_range()  # from the stored integers where the file has them
        result.info = {"shape": list(ct.shape), "spacing": list(ct.spacing), "affine": ct.affine.tolist(),
                       "hu_min": hu_min, "hu_max": hu_max,
                       "checksum": ct.checksum(), "labels": source.labels or "", "source_stat": fingerprint}
        warnings = []  # rendered as asked, but the user should know
        if ct.meta.get("rescale_defaulted"):
            warnings.append(f"{source.path}: no slice carries RescaleSlope/RescaleIntercept; "
                            "the stored values were read as HU (slope 1, intercept 0)")
        if source.copies:
            warnings.append(f"{source.path}: {len(source.copies)} file(s) left out as copies of SOP instances "
                            f"read from other files of the series (same UID and size), e.g. {source.copies[0]}")
        if warnings:
            result.info["warnings"] = warnings
    except CTReadError as exc:
        result.error_kind, result.error = exc.kind, str(exc)
        return result
    except Exception as exc:  # a reader's unforeseen failure: this CT fails, the run goes on (as on Dask)
        return _failed(result, source, "task_error", exc)
    t1 = time.perf_counter()
    render_timing.take()  # this thread's clock from here on: this CT's render calls alone
    try:
        poses = recipe.sample_poses(source.id)
        recipe.check_views(poses, source.id)  # random draws of other CTs may stray too
        field_ = integrated_field(recipe.intensity, ct.hu)
        images = finish(recipe.intensity, render_all(renderer, ct, poses, field_), source.id)
        masks = boxes = None
        if recipe.masks is not None:
            masks, boxes, matched = project_masks(renderer, ct, poses, source.labels, recipe.masks)
            result.info["mask_structures"] = json.dumps(matched)
        t2 = time.perf_counter()
        result.info["renderer"] = json.dumps(renderer.describe(), sort_keys=True)  # what made these rows
        writer.write_rows(ct_index, images, poses, masks=masks, boxes=boxes)
    except CTReadError as exc:  # e.g. a missing or mismatched label map
        result.error_kind, result.error = exc.kind, str(exc)
        return result
    except DensityUndefined as exc:  # a blank CT: its images would be NaN
        result.error_kind, result.error = NoContrast.kind, str(NoContrast(source.path, str(exc)))
        return result
    except (RuntimeError, ValueError, MemoryError, OSError) as exc:
        # Recorded with its reason and reported (exit code 3); never silently dropped.
        return _failed(result, source, "render_error", exc)
    except Exception as exc:
        return _failed(result, source, "task_error", exc)
    t3 = time.perf_counter()
    result.status, result.views = "done", len(poses)
    # "render" is the whole phase; render_wait/upload/prepare/march are where it went (render/timing.py)
    result.timings = {"load": t1 - t0, "render": t2 - t1, "write": t3 - t2,
                      **{render_timing.KEY_PREFIX + name: secs for name, secs in render_timing.take().items()}}
    result.finished = time.time()
    return result


def _failed(result: CTResult, source: CTSource, kind: str, exc: Exception) -> CTResult:
    """`exc` recorded against its CT as `<kind>:<type>` with its traceback. `task_error` is an
    unforeseen exception, named as a Dask run names a failed task, so in-process and Dask runs end
    the same way (exit code 3)."""
    result.error_kind = f"{kind}:{type(exc).__name__}"
    result.error = f"{source.path}: {exc}\n{traceback.format_exc(limit=3)}"
    return result
