"""drrkit: simulated chest X-ray corpora (DRRs) from CT."""

__version__ = "0.1.0"
