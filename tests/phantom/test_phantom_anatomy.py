from dataclasses import replace

import numpy as np

from drrkit.phantom import LABELS, PhantomSpec, case_spec, sample_spec
from drrkit.phantom.anatomy import FOV_MM, NODULE_MARGIN_MM, NODULE_RADIUS_MM, _sphere_points, label_at


def test_label_table():
    assert LABELS == {"background": 0, "body": 1, "left_lung": 2, "right_lung": 3, "heart": 4,
                      "spine": 5, "ribs": 6, "nodule": 7}


def test_sample_spec_is_deterministic():
    a = sample_spec(np.random.default_rng(123), 0.5)
    b = sample_spec(np.random.default_rng(123), 0.5)
    c = sample_spec(np.random.default_rng(124), 0.5)
    assert isinstance(a, PhantomSpec) and a == b and a != c


def test_anatomy_does_not_depend_on_nodule_prob():
    for k in range(10):
        off, on = case_spec(7, k, 0.0), case_spec(7, k, 1.0)
        assert not off.nodule_present and on.nodule_present
        assert replace(off, nodule_present=True) == on


def test_anatomy_varies_and_fits_the_field_of_view():
    specs = [case_spec(0, k) for k in range(40)]
    hearts = {s.heart_axes for s in specs}
    assert len(hearts) == len(specs)
    for s in specs:
        a, b = s.body_axes
        assert a < FOV_MM[0] / 2 and abs(s.body_center_y) + b < FOV_MM[1] / 2
        for side, sign in (("left", -1), ("right", 1)):  # RAS: +x is patient right
            c, ax = getattr(s, f"{side}_lung_center"), getattr(s, f"{side}_lung_axes")
            assert sign * c[0] > ax[0]  # each lung stays on its own side of the midline
            assert abs(c[2]) + ax[2] < FOV_MM[2] / 2
        assert NODULE_RADIUS_MM[0] <= s.nodule_radius_mm <= NODULE_RADIUS_MM[1]


def test_nodule_ball_with_margin_is_lung_of_its_side():
    for k in range(20):
        s = case_spec(3, k, 1.0)
        pts = _sphere_points(np.array(s.nodule_center), s.nodule_radius_mm + NODULE_MARGIN_MM - 0.01, 1000)
        bare = replace(s, nodule_present=False)
        assert (label_at(bare, *pts.T) == LABELS[f"{s.nodule_lung}_lung"]).all()
        assert (label_at(s, *np.array(s.nodule_center)[:, None]) == LABELS["nodule"]).all()
        assert (s.nodule_center[0] < 0) == (s.nodule_lung == "left")
