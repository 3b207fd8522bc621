"""Rendering backends behind one interface (see base.Renderer)."""

from drrkit.render.base import Renderer, render_all, resolve_device
from drrkit.render.registry import BACKENDS, make_renderer

__all__ = ["Renderer", "render_all", "resolve_device", "BACKENDS", "make_renderer"]
