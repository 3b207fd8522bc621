"""torch Datasets that hand corpus stores to the sibling systems' training code."""

from drrkit.datasets.masked import MaskedViewDataset
from drrkit.datasets.sequences import TransitionDataset
from drrkit.datasets.triplets import TripletDataset

__all__ = ["MaskedViewDataset", "TransitionDataset", "TripletDataset"]
