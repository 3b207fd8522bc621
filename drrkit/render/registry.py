"""Backend names → constructors, and what `--backend auto` means on each device."""

from __future__ import annotations

from drrkit.geometry.recipe import Recipe
from drrkit.render.base import Renderer, resolve_device

# "diffdrr" is the reference (plain DiffDRR Siddon). "fast" reproduces its rays and density and
# integrates by slab marching: per view corr > 0.9999 and mean |error| 0.1-0.3 % of the image on
# clinical CTs, ~1e-4 on coarse ones (tests/render/test_fast_backend.py), ~30× faster on CPU
# (benchmarks/README.md). "auto" is the fastest backend that passes those parity tests: "fast",
# on CPU and CUDA alike.
BACKENDS = ("auto", "diffdrr", "fast")


def make_renderer(recipe: Recipe, backend: str = "auto", device: str = "auto",
                  batch_size: int | None = None) -> Renderer:
    """Build the renderer for a recipe. Unknown backends are an error, never substituted."""
    device = resolve_device(device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "diffdrr":
        from drrkit.render.diffdrr_backend import DiffDRRBackend

        return DiffDRRBackend(recipe.detector, recipe.volume, device=device, batch_size=batch_size)
    from drrkit.render.fast_backend import FastBackend

    return FastBackend(recipe.detector, recipe.volume, device=device, batch_size=batch_size)
