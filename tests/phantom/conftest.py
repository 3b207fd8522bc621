"""Fixtures for the phantom tests: a 64^3 case with a clearly resolvable nodule."""

from __future__ import annotations

import pytest

from drrkit.phantom import case_spec, make_phantom


@pytest.fixture(scope="session")
def nodule_spec():
    """First case of seed 0 (nodule_prob=1) with a nodule radius >= 7 mm."""
    for k in range(100):
        spec = case_spec(0, k, nodule_prob=1.0)
        if spec.nodule_radius_mm >= 7.0:
            return spec
    raise AssertionError("no large nodule in 100 cases")


@pytest.fixture(scope="session")
def nodule_case(nodule_spec):
    return make_phantom(nodule_spec, 64, id="case")
