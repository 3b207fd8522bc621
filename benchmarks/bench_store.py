"""Store writes against zarr's defaults, same run: the image codec and the client's bookkeeping.

  images       one CT's views (taken from --store) written as one shard with drrkit's IMAGE_CODEC
               (Blosc LZ4, byte shuffle) vs zarr's default for float32 (zstd level 0) vs none:
               write and read seconds (median of --repeats), bytes on disk
  bookkeeping  the client's per-CT table updates on an --n-cts store: one CT at a time
               (CorpusWriter.record_ct + mark_done, as before batching) vs StatusLog batches

  python benchmarks/bench_store.py --store xwin.zarr --out benchmarks/results/store-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import machine_info  # noqa: E402


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def image_codecs(images: np.ndarray, work: Path, repeats: int) -> dict:
    import zarr

    from drrkit.store.writer import IMAGE_CODEC

    v, h, w = images.shape
    out = {}
    for name, kw in (("drrkit", {"compressors": [IMAGE_CODEC]}), ("zarr-default", {}), ("none", {"compressors": None})):
        writes, reads = [], []
        for k in range(repeats):
            path = work / f"{name}-{k}.zarr"
            arr = zarr.create_array(str(path), shape=images.shape, dtype=images.dtype, chunks=(1, h, w),
                                    shards=(v, h, w), overwrite=True, **kw)
            t0 = time.perf_counter()
            arr[:] = images
            writes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            np.asarray(arr[:])
            reads.append(time.perf_counter() - t0)
        out[name] = {"codec": str(arr.compressors), "write_s": float(np.median(writes)),
                     "read_s": float(np.median(reads)), "bytes": _du(path)}
    for name in ("zarr-default", "none"):
        out[f"write_ratio_{name}_over_drrkit"] = out[name]["write_s"] / out["drrkit"]["write_s"]
        out[f"size_ratio_{name}_over_drrkit"] = out[name]["bytes"] / out["drrkit"]["bytes"]
    return out


def bookkeeping(work: Path, n_cts: int, n_results: int) -> dict:
    from drrkit.geometry.recipe import load_recipe
    from drrkit.pipeline.bookkeeping import StatusLog
    from drrkit.pipeline.task import CTResult
    from drrkit.store import CTEntry, create_or_open

    recipe = load_recipe("xwin").with_height(64)
    entries = [CTEntry(f"ct{i:05d}", f"/data/ct-rate/train/ct{i:05d}.nii.gz", "nifti") for i in range(n_cts)]
    writer = create_or_open(work / "table.zarr", recipe, entries, overwrite=True)
    info = {"shape": [512, 512, 300], "spacing": [0.7, 0.7, 1.1], "affine": np.eye(4).tolist(), "hu_min": -1024.0,
            "hu_max": 3071.0, "checksum": "sha256f:" + "0" * 64, "labels": ""}
    results = [CTResult(i, f"ct{i:05d}", "done", info=info, views=61) for i in range(2 * n_results)]
    t0 = time.perf_counter()
    for r in results[:n_results]:
        writer.record_ct(r.ct_index, r.info)
        writer.mark_done(r.ct_index)
    single = (time.perf_counter() - t0) / n_results
    log = StatusLog(writer)
    t0 = time.perf_counter()
    for r in results[n_results:]:
        log.add(r)
    log.flush()
    batched = (time.perf_counter() - t0) / n_results
    return {"n_cts": n_cts, "results": n_results, "one_at_a_time_s_per_ct": single, "batched_s_per_ct": batched,
            "ratio_one_at_a_time_over_batched": single / batched}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="a corpus store; its first CT's views are written")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n-cts", type=int, default=4096)
    ap.add_argument("--results", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from drrkit.store import open_corpus

    corpus = open_corpus(args.store)
    images = np.asarray(corpus.images[corpus.ct_rows(0)])
    work = Path(tempfile.mkdtemp(prefix="drrkit-bench-store-"))
    try:
        result = {"benchmark": "store", "machine": machine_info(), "store": str(args.store),
                  "images_shape": list(images.shape), "images_dtype": str(images.dtype),
                  "images": image_codecs(images, work, args.repeats),
                  "bookkeeping": bookkeeping(work, args.n_cts, args.results)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    im, bk = result["images"], result["bookkeeping"]
    print(f"images {images.shape}: drrkit {im['drrkit']['write_s']:.3f}s {im['drrkit']['bytes'] / 1e6:.1f} MB, "
          f"zarr default {im['zarr-default']['write_s']:.3f}s {im['zarr-default']['bytes'] / 1e6:.1f} MB, "
          f"none {im['none']['write_s']:.3f}s; bookkeeping {bk['one_at_a_time_s_per_ct'] * 1e3:.1f} -> "
          f"{bk['batched_s_per_ct'] * 1e3:.2f} ms per CT ({bk['ratio_one_at_a_time_over_batched']:.0f}x); "
          f"written {args.out}")


if __name__ == "__main__":
    main()
