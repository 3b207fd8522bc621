"""Planning a DICOM corpus: discovery's header scan in parallel processes vs one process.

Writes --series DICOM CT series of --slices files each, every file carrying the full header of
pydicom's CT_small.dcm (a real scanner's header, ~7 kB, 258 elements) over a small pixel matrix
(the scan reads headers only, so pixel size does not matter and the disk stays small), then times
`discover_cts` with the serial scan (`jobs=1`, discovery before drrkit/ct/scan.py: the peer)
and with each `--jobs` value, in the same run, alternating, and checks that every run finds the
same sources and errors.

    python benchmarks/bench_discover.py --series 40 --slices 300 --out benchmarks/results/discover-cpu-2core.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_corpus(root: Path, n_series: int, n_slices: int, matrix: int = 16) -> int:
    import numpy as np
    import pydicom
    import pydicom.data
    from pydicom.uid import generate_uid

    template = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    template.Rows = template.Columns = matrix
    template.PixelData = np.zeros((matrix, matrix), dtype="<i2").tobytes()
    for s in range(n_series):
        folder = root / f"patient{s:05d}" / "ct"
        folder.mkdir(parents=True)
        template.SeriesInstanceUID = generate_uid()
        for k in range(n_slices):
            template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            template.InstanceNumber = k + 1
            template.ImagePositionPatient = [0.0, 0.0, float(k)]
            template.save_as(folder / f"IM{k:05d}.dcm", enforce_file_format=True)
    return n_series * n_slices


def timed_discovery(root: Path, jobs: int):
    from drrkit.ct import discover_cts

    t0 = time.perf_counter()
    sources, errors = discover_cts(root, jobs=jobs)
    return time.perf_counter() - t0, (sources, [str(e) for e in errors])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--series", type=int, default=40)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--jobs", type=int, nargs="+", default=[os.cpu_count() or 1])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        root = Path(tmp) / "corpus"
        t0 = time.perf_counter()
        n_files = write_corpus(root, args.series, args.slices)
        print(f"wrote {n_files} files in {time.perf_counter() - t0:.1f} s", flush=True)
        timed_discovery(root, 1)  # page cache warm for every variant
        variants = [1, *[j for j in args.jobs if j != 1]]
        seconds: dict[int, list[float]] = {j: [] for j in variants}
        reference = None
        for _ in range(args.repeats):
            for jobs in variants:
                elapsed, outcome = timed_discovery(root, jobs)
                reference = reference or outcome
                if outcome != reference:
                    raise SystemExit(f"jobs={jobs} found other sources or errors than jobs=1")
                seconds[jobs].append(elapsed)
                print(f"jobs={jobs}: {elapsed:.2f} s ({n_files / elapsed:,.0f} files/s)", flush=True)
    serial = statistics.median(seconds[1])
    rows = [{"jobs": j, "seconds": s, "median_s": statistics.median(s),
             "files_per_second": n_files / statistics.median(s),
             "x_serial": serial / statistics.median(s)} for j, s in seconds.items()]
    result = {
        "benchmark": "bench_discover", "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "peer": "discover_cts with jobs=1 (one process: discovery before the parallel scan)",
        "series": args.series, "slices": args.slices, "files": n_files,
        "header": "pydicom CT_small.dcm (258 elements), 16x16 pixels",
        "n_sources": len(reference[0]), "n_errors": len(reference[1]), "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    for r in rows:
        print(f"jobs={r['jobs']}: median {r['median_s']:.2f} s, {r['files_per_second']:,.0f} files/s, "
              f"{r['x_serial']:.2f}x serial")


if __name__ == "__main__":
    main()
