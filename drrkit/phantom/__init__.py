"""Synthetic chest CT phantoms with exact ground truth (tests, demos, model evaluation)."""

from drrkit.phantom.anatomy import LABELS, PhantomSpec, sample_spec
from drrkit.phantom.chest import make_phantom
from drrkit.phantom.cohort import case_spec, read_cohort_csv, write_cohort

__all__ = ["LABELS", "PhantomSpec", "sample_spec", "make_phantom", "write_cohort", "read_cohort_csv", "case_spec"]
