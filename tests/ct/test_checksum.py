"""CTVolume.checksum: defined on values, not memory layout; old stores' checksums still match."""

import hashlib

import numpy as np

from drrkit.ct import CTVolume
import xxhash

from drrkit.ct.volume import CHECKSUM_PREFIX, SHA256_PREFIX


def volume(hu, affine=None):
    return CTVolume(hu=hu, affine=np.eye(4) if affine is None else affine, id="v", source="mem")


def test_checksum_depends_on_values_not_layout():
    hu = np.random.default_rng(0).normal(size=(6, 5, 4)).astype(np.float32)
    c_order, f_order = volume(np.ascontiguousarray(hu)), volume(np.asfortranarray(hu))
    assert c_order.checksum() == f_order.checksum()
    assert c_order.checksum().startswith(CHECKSUM_PREFIX)
    changed = hu.copy()
    changed[5, 4, 3] += 1e-3
    assert volume(changed).checksum() != c_order.checksum()
    moved = np.eye(4)
    moved[0, 3] = 0.5
    assert volume(hu, moved).checksum() != c_order.checksum()


def test_matches_checksum_takes_current_and_legacy_values():
    hu = np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)
    vol = volume(np.asfortranarray(hu))
    h = hashlib.sha256()  # drrkit 0.1.0: C-order float32 values, then the float64 affine
    h.update(np.ascontiguousarray(hu))
    h.update(np.eye(4).tobytes())
    assert vol.matches_checksum(h.hexdigest())
    assert vol.matches_checksum(vol.checksum())
    assert not vol.matches_checksum(CHECKSUM_PREFIX + h.hexdigest())
    assert not vol.matches_checksum("0" * 64)


def test_checksum_is_xxh3_128_of_fortran_values_then_affine():
    hu = np.random.default_rng(2).normal(size=(4, 3, 5)).astype(np.float32)
    affine = np.diag([0.7, 0.7, 2.5, 1.0])
    h = xxhash.xxh3_128()
    h.update(np.asfortranarray(hu).tobytes(order="F"))  # first voxel axis fastest
    h.update(affine.tobytes())
    assert volume(hu, affine).checksum() == CHECKSUM_PREFIX + h.hexdigest()


def test_matches_checksum_takes_sha256f_values_of_earlier_stores():
    hu = np.random.default_rng(3).normal(size=(3, 4, 5)).astype(np.float32)
    vol = volume(np.ascontiguousarray(hu))
    h = hashlib.sha256()  # 'sha256f:': the same bytes as today's checksum, hashed with SHA-256
    h.update(np.asfortranarray(hu).tobytes(order="F"))
    h.update(np.eye(4).tobytes())
    assert vol.matches_checksum(SHA256_PREFIX + h.hexdigest())
    assert not vol.matches_checksum(SHA256_PREFIX + "0" * 64)
    changed = hu.copy()
    changed[0, 0, 0] += 1
    assert not volume(changed).matches_checksum(SHA256_PREFIX + h.hexdigest())
