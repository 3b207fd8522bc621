"""A CT source's file fingerprint: what a resume compares to notice a source replaced after it was
rendered.

The voxel checksum (`cts/checksum`) says whether stored images came from the data now on disk,
but it costs a full read of every CT; a resume of a 50,000-CT corpus cannot afford that for CTs
already done. The fingerprint costs one `stat` per file: the sorted (file name, size, mtime in ns)
of the source's files (and of its label map, if any), hashed. A task takes it just before it reads the CT, so a file rewritten
while it is being read differs at the next resume, never the other way round. Names are base
names, so a corpus moved or copied with its times kept (`rsync -a`, `cp -p`) keeps its
fingerprints; a file touched without a change of content reads as changed, and that CT is
rendered again to the same images.
"""

from __future__ import annotations

import os

import xxhash

from drrkit.ct.discover import CTSource

PREFIX = "stat-xxh3:"


def source_fingerprint(source: CTSource) -> str:
    """The fingerprint of `source`'s files as they are now; raises OSError if one cannot be read."""
    files = sorted(source.files or (source.path,))
    if source.labels:  # a mask recipe's label map: replaced, the stored masks are stale too
        files.append(source.labels)
    h = xxhash.xxh3_64()
    for path in files:
        st = os.stat(path)
        h.update(f"{os.path.basename(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return f"{PREFIX}{len(files)}:{h.hexdigest()}"


def changed_since(source: CTSource, recorded: str) -> bool:
    """Whether `source` differs from the fingerprint `recorded` when it was rendered. An empty
    record (stores made before fingerprints, or a CT that failed) says nothing: not changed."""
    if not recorded:
        return False
    try:
        return source_fingerprint(source) != recorded
    except OSError:
        return True  # gone or unreadable since: rendering it again records why
