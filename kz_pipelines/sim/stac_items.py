"""STAC items and collections for simulated scenes, with Earth Search v1's asset keys and properties
(collections `sentinel-2-l2a`, `sentinel-2-l1c`, `sentinel-1-grd`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np

import kz_pipelines
from kz_pipelines.raster import GridSpec, footprint
from kz_pipelines.sim.acquisitions import S1Acquisition, S2Acquisition
from kz_pipelines.sim.spectra import BANDS, L2A_BANDS
from kz_pipelines.tiles import S2Tile

__all__ = [
    "S1_COLLECTION",
    "S2_COLLECTIONS",
    "collection_dict",
    "s1_item",
    "s1_item_id",
    "s2_item",
    "s2_item_id",
]

S2_COLLECTIONS = {"L2A": "sentinel-2-l2a", "L1C": "sentinel-2-l1c"}
S1_COLLECTION = "sentinel-1-grd"
_EXT = "https://stac-extensions.github.io"
_S2_EXTENSIONS = [
    f"{_EXT}/grid/v1.1.0/schema.json",
    f"{_EXT}/mgrs/v1.0.0/schema.json",
    f"{_EXT}/processing/v1.1.0/schema.json",
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
    f"{_EXT}/view/v1.0.0/schema.json",
    f"{_EXT}/eo/v1.1.0/schema.json",
]
_S1_EXTENSIONS = [
    f"{_EXT}/projection/v1.1.0/schema.json",
    f"{_EXT}/sat/v1.0.0/schema.json",
    f"{_EXT}/processing/v1.1.0/schema.json",
    f"{_EXT}/sar/v1.0.0/schema.json",
    f"{_EXT}/raster/v1.1.0/schema.json",
]
_COG = "image/tiff; application=geotiff; profile=cloud-optimized"


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _sun_distance_factor(t: datetime) -> float:
    """1 / d^2, d the Earth-Sun distance in astronomical units."""
    d = 1.0 - 0.01672 * np.cos(2 * np.pi * (t.timetuple().tm_yday - 4) / 365.25)
    return float(1.0 / d**2)


def s2_item_id(acq: S2Acquisition, level: str) -> str:
    """Earth Search style id, e.g. ``S2B_35VLF_20240401_0_L2A``."""
    return f"S2{acq.platform[-1].upper()}_{acq.tile}_{acq.time:%Y%m%d}_0_{level}"


def s1_item_id(acq: S1Acquisition) -> str:
    """ESA product style id, e.g. ``S1A_IW_GRDH_1SDV_20240401T163112_20240401T163137_053324_067A1B``."""
    end = acq.time + timedelta(seconds=25)
    take = (acq.absolute_orbit * 7 + acq.relative_orbit) % 0xFFFFFF
    return (
        f"S1{acq.platform[-1].upper()}_IW_GRDH_1SDV_{acq.time:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}_"
        f"{acq.absolute_orbit:06d}_{take:06X}"
    )


def _links(collection: str, item_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"./{item_id}.json", "type": "application/geo+json"},
        {"rel": "parent", "href": "../../../../collection.json", "type": "application/json"},
        {"rel": "collection", "href": "../../../../collection.json", "type": "application/json"},
        {"rel": "root", "href": "../../../../../catalog.json", "type": "application/json"},
    ]


def s2_item(
    acq: S2Acquisition,
    tile: S2Tile,
    grid: GridSpec,
    level: str,
    scl_counts: np.ndarray,
    nodata_pct: float,
) -> dict[str, Any]:
    """The STAC item of a simulated S2 scene (asset hrefs relative to the item's folder).

    Args:
        acq: the acquisition.
        tile: its tile.
        grid: the 10 m window grid of the scene.
        level: ``L2A`` or ``L1C``.
        scl_counts: pixel count per class 0..11 of the scene's SCL (both levels take their
            ``eo:cloud_cover`` from it; only L2A items carry the per-class ``s2:*`` percentages).
        nodata_pct: percentage of the window without data.
    """
    item_id = s2_item_id(acq, level)
    geom, bbox = footprint(grid)
    boa = acq.baseline >= "04.00"
    offset = -0.1 if boa else 0.0
    gen = acq.time + timedelta(hours=1, minutes=7)
    plat = f"S2{acq.platform[-1].upper()}"
    code = "MSIL2A" if level == "L2A" else "MSIL1C"
    n_base = acq.baseline.replace(".", "")
    valid = max(float(scl_counts[1:].sum()), 1.0)

    def pct(*classes: int) -> float:
        return round(float(sum(scl_counts[c] for c in classes)) / valid * 100.0, 6)

    lon_c, lat_c = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    props: dict[str, Any] = {
        "created": _iso(gen + timedelta(minutes=20)),
        "platform": acq.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": pct(8, 9, 10),
        "proj:epsg": tile.epsg,
        "proj:centroid": {"lat": round(lat_c, 5), "lon": round(lon_c, 5)},
        "mgrs:utm_zone": tile.utm_zone,
        "mgrs:latitude_band": tile.latitude_band,
        "mgrs:grid_square": tile.grid_square,
        "grid:code": f"MGRS-{tile.tile_id}",
        "view:azimuth": acq.view_azimuth,
        "view:incidence_angle": acq.view_incidence,
        "view:sun_azimuth": acq.sun_azimuth,
        "view:sun_elevation": acq.sun_elevation,
        "s2:tile_id": f"{plat}_OPER_MSI_{level}_TL_2BPS_{gen:%Y%m%dT%H%M%S}_T{tile.tile_id}_N{acq.baseline}",
        "s2:degraded_msi_data_percentage": 0,
        "s2:nodata_pixel_percentage": round(nodata_pct, 6),
        "s2:product_type": f"S2{code}",
        "s2:processing_baseline": acq.baseline,
        "s2:product_uri": (
            f"{plat}_{code}_{acq.time:%Y%m%dT%H%M%S}_N{n_base}_R{acq.relative_orbit:03d}_"
            f"T{tile.tile_id}_{gen:%Y%m%dT%H%M%S}.SAFE"
        ),
        "s2:generation_time": gen.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "s2:datatake_id": f"G{plat}_{acq.time:%Y%m%dT%H%M%S}_{acq.relative_orbit:06d}_N{acq.baseline}",
        "s2:datatake_type": "INS-NOBS",
        "s2:datastrip_id": f"{plat}_OPER_MSI_{level}_DS_2BPS_{gen:%Y%m%dT%H%M%S}_N{acq.baseline}",
        "s2:reflectance_conversion_factor": _sun_distance_factor(acq.time),
        "datetime": _iso(acq.time),
        "s2:sequence": "0",
        "processing:software": {"kz_pipelines.sim": kz_pipelines.__version__},
        "updated": _iso(gen + timedelta(minutes=20)),
    }
    if level == "L2A":
        props.update(
            {
                "s2:saturated_defective_pixel_percentage": 0,
                "s2:cloud_shadow_percentage": pct(3),
                "s2:vegetation_percentage": pct(4),
                "s2:not_vegetated_percentage": pct(5),
                "s2:water_percentage": pct(6),
                "s2:unclassified_percentage": pct(7),
                "s2:medium_proba_clouds_percentage": pct(8),
                "s2:high_proba_clouds_percentage": pct(9),
                "s2:thin_cirrus_percentage": pct(10),
                "s2:snow_ice_percentage": pct(11),
                # the data keep ESA's +1000 offset (Element 84: true means they removed it)
                "earthsearch:boa_offset_applied": False,
            }
        )
    assets: dict[str, Any] = {}
    for band in L2A_BANDS if level == "L2A" else BANDS:
        g = grid.coarsened(band.resolution)
        assets[band.asset] = {
            "href": f"./{band.name}.tif",
            "type": _COG,
            "title": band.title,
            "eo:bands": [
                {
                    "name": band.name,
                    "common_name": band.common_name,
                    "center_wavelength": band.center,
                    "full_width_half_max": band.fwhm,
                }
            ],
            "gsd": band.resolution,
            "proj:shape": [g.height, g.width],
            "proj:transform": list(g.transform)[:6],
            "raster:bands": [
                {
                    "nodata": 0,
                    "data_type": "uint16",
                    "spatial_resolution": band.resolution,
                    "scale": 0.0001,
                    "offset": offset,
                }
            ],
            "roles": ["data", "reflectance"],
        }
    if level == "L2A":
        g = grid.coarsened(20)
        assets["scl"] = {
            "href": "./SCL.tif",
            "type": _COG,
            "title": "Scene classification map (SCL)",
            "gsd": 20,
            "proj:shape": [g.height, g.width],
            "proj:transform": list(g.transform)[:6],
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
            "roles": ["data"],
        }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": _S2_EXTENSIONS,
        "id": item_id,
        "bbox": bbox,
        "geometry": geom,
        "properties": props,
        "links": _links(S2_COLLECTIONS[level], item_id),
        "assets": assets,
        "collection": S2_COLLECTIONS[level],
    }


def s1_item(acq: S1Acquisition, grid: GridSpec, with_coherence: bool) -> dict[str, Any]:
    """The STAC item of a simulated S1 GRD scene, terrain-corrected onto the tile's 10 m grid.

    Assets ``vv`` and ``vh`` hold sigma0 in linear power (float32, nodata 0); ``coh_vv`` holds the VV
    coherence with the previous acquisition of the same relative orbit, when there is one.
    """
    item_id = s1_item_id(acq)
    geom, bbox = footprint(grid)
    end = acq.time + timedelta(seconds=25)
    lon_c, lat_c = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    props: dict[str, Any] = {
        "sar:frequency_band": "C",
        "sar:center_frequency": 5.405,
        "sar:observation_direction": "right",
        "sar:instrument_mode": "IW",
        "sar:polarizations": ["VV", "VH"],
        "sar:product_type": "GRD",
        "sar:resolution_range": 20,
        "sar:resolution_azimuth": 22,
        "sar:pixel_spacing_range": 10,
        "sar:pixel_spacing_azimuth": 10,
        "sar:looks_range": 5,
        "sar:looks_azimuth": 1,
        "sar:looks_equivalent_number": 4.4,
        "sat:orbit_state": acq.orbit_state,
        "sat:absolute_orbit": acq.absolute_orbit,
        "sat:relative_orbit": acq.relative_orbit,
        "proj:epsg": grid.epsg,
        "proj:shape": [grid.height, grid.width],
        "proj:transform": list(grid.transform)[:6],
        "proj:centroid": {"lat": round(lat_c, 5), "lon": round(lon_c, 5)},
        "platform": acq.platform,
        "constellation": "sentinel-1",
        "start_datetime": _iso(acq.time),
        "end_datetime": _iso(end),
        "s1:instrument_configuration_ID": "7",
        "s1:product_timeliness": "Fast-24h",
        "s1:processing_level": "1",
        "s1:resolution": "high",
        "s1:orbit_source": "RESORB",
        "s1:product_identifier": item_id,
        "datetime": _iso(acq.time + timedelta(seconds=12)),
        "processing:software": {"kz_pipelines.sim": kz_pipelines.__version__},
    }
    assets: dict[str, Any] = {}
    pols = [("vv", "VV Data"), ("vh", "VH Data")] + ([("coh_vv", "VV coherence")] if with_coherence else [])
    for key, title in pols:
        assets[key] = {
            "href": f"./{key}.tif",
            "type": _COG,
            "title": title,
            "description": (
                "Sigma0, linear power, terrain-corrected onto the MGRS tile grid"
                if key != "coh_vv"
                else f"Coherence with the previous acquisition of relative orbit {acq.relative_orbit}"
                f" ({acq.repeat_days} days before)"
            ),
            "raster:bands": [{"nodata": 0, "data_type": "float32", "spatial_resolution": 10}],
            "roles": ["data"] if key != "coh_vv" else ["data", "coherence"],
        }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": _S1_EXTENSIONS,
        "id": item_id,
        "bbox": bbox,
        "geometry": geom,
        "properties": props,
        "links": _links(S1_COLLECTION, item_id),
        "assets": assets,
        "collection": S1_COLLECTION,
    }


def collection_dict(collection_id: str, bbox: list[float], start: datetime, end: datetime) -> dict[str, Any]:
    """A STAC collection for one simulated product."""
    titles = {
        "sentinel-2-l2a": "Sentinel-2 Level-2A (simulated)",
        "sentinel-2-l1c": "Sentinel-2 Level-1C (simulated)",
        "sentinel-1-grd": "Sentinel-1 Level-1C Ground Range Detected (simulated)",
    }
    return {
        "type": "Collection",
        "stac_version": "1.0.0",
        "stac_extensions": [],
        "id": collection_id,
        "title": titles[collection_id],
        "description": f"{titles[collection_id]}: scenes of a kz_pipelines simulated region.",
        "license": "CC-BY-4.0",
        "keywords": ["sentinel", "simulated", "kz_pipelines"],
        "providers": [{"name": "kz_pipelines simulator", "roles": ["producer", "processor", "host"]}],
        "extent": {"spatial": {"bbox": [bbox]}, "temporal": {"interval": [[_iso(start), _iso(end)]]}},
        "links": [
            {"rel": "root", "href": "../catalog.json", "type": "application/json"},
            {"rel": "parent", "href": "../catalog.json", "type": "application/json"},
            {"rel": "self", "href": "./collection.json", "type": "application/json"},
        ],
    }
