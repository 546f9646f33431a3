"""The simulated region: a synthetic agricultural landscape published exactly like real Sentinel data.

`simulate(config, out_dir)` writes parcels, Sentinel-2 L2A/L1C and Sentinel-1 scenes as COGs with
Earth Search-like STAC items, and the ground truth (cloud masks, crop classes, events, damage, tillage).
"""

from kz_pipelines.sim.config import SimConfig, SimConfigError
from kz_pipelines.sim.region import simulate

__all__ = ["SimConfig", "SimConfigError", "simulate"]
