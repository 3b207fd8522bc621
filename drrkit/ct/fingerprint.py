"""A CT source's file fingerprint: what a resume compares to notice a source replaced after it was
rendered.

The voxel checksum (`cts/checksum`) says whether stored images came from the data now on disk,
but it costs a full read of every CT; a resume of a 50,000-CT corpus cannot afford that for CTs
already done. The fingerprint costs one `stat` per file: the sorted (file name, size, mtime in ns)
of the source's files, hashed. A task takes it just before it reads the CT, so a file rewritten
while it is being read differs at the next resume, never the other way round. Names are base
names, so a corpus moved or copied with its times kept (`rsync -a`, `cp -p`) keeps its
fingerprints; a file touched without a change of content reads as changed, and that CT is
rendered again to the same images.

Format: `stat-xxh3:<n files>:<hex>` for the CT's files; recipes with masks append
`;labels:<hex>` for the label map and the `structures.csv` beside it, which the masks were
projected from. The label part is compared only when the resume has a label map for the CT too:
a resume run without `--labels` (or with the label folder moved) keeps its done CTs, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

import xxhash

from drrkit.ct.discover import CTSource

PREFIX = "stat-xxh3:"
LABELS = ";labels:"


def _digest(paths) -> str:
    h = xxhash.xxh3_64()
    for path in paths:
        st = os.stat(path)
        h.update(f"{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def source_fingerprint(source: CTSource, masks: bool = False) -> str:
    """The fingerprint of `source`'s files as they are now, with its label map's (and structure
    table's, where there is one) when `masks` and the source has a label map. Raises OSError if a
    CT file cannot be read."""
    files = sorted(source.files or (source.path,))
    out = f"{PREFIX}{len(files)}:{_digest(files)}"
    if masks and source.labels:
        table = Path(source.labels).parent / "structures.csv"
        out += LABELS + _digest([source.labels, *([table] if table.is_file() else [])])
    return out


def changed_since(source: CTSource, recorded: str, masks: bool = False) -> bool:
    """Whether `source` differs from the fingerprint `recorded` when it was rendered. An empty
    record (stores made before fingerprints, or a CT that failed) says nothing: not changed. The
    label part counts only where both the record and `source` have a label map."""
    if not recorded:
        return False
    files, _, labels = recorded.partition(LABELS)
    try:
        now_files, _, now_labels = source_fingerprint(source, masks).partition(LABELS)
    except OSError:
        return True  # gone or unreadable since: rendering it again records why
    return now_files != files or bool(labels and now_labels and now_labels != labels)
