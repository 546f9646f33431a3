"""One item model for every STAC provider.

Providers describe the same Sentinel products in different ways. `normalize_item` reads what each one
publishes and returns a `SceneItem`: platform, time, tile, CRS, orbit, processing baseline,
polarizations and, per band, the href with its native resolution, dtype, nodata, scale and offset.

What differs, and how it is resolved (each seen in real items, see kz_pipelines_tests/test_stac_normalize.py):

- Asset keys: common names (``red``, Earth Search), band ids (``B04``, Planetary Computer, Earth Search v0)
  or band id with a resolution (``B04_10m``, ``B04_20m``..., CDSE). A band is published once per
  resolution by CDSE: the asset at the band's native resolution is used (COG preferred to JPEG2000
  where both exist, as Earth Search's ``red`` / ``red-jp2``).
- CRS: item-level ``proj:epsg`` or ``proj:code``, or asset-level ``proj:code`` (STAC 1.1, CDSE); for a
  Sentinel-2 item without any, the UTM zone of its MGRS tile.
- Tile: ``s2:mgrs_tile``, ``grid:code`` (``MGRS-32TMT``), ``mgrs:*`` or ``sentinel:*`` parts, or the
  product id.
- Scale and offset: ``raster:bands`` (STAC 1.0), flat ``raster:scale``/``raster:offset`` (STAC 1.1), or
  nothing (Planetary Computer): then derived from the processing baseline. From baseline 04.00
  (25 January 2022) Level-1C and Level-2A digital numbers carry a +1000 offset
  (reflectance = DN / 10000 - 0.1). Earth Search's ``sentinel-2-l2a`` has
  ``earthsearch:boa_offset_applied``: true means Element 84 already removed the offset from the data
  (reflectance = DN / 10000, whatever ``raster:bands`` says: Element84/earth-search#9 and #71 show its
  ``raster:bands`` offset is unreliable there), false means the data are as ESA made them.
- Relative orbit: ``sat:relative_orbit`` or, for Sentinel-2, the ``_Rnnn_`` part of the product URI/id.
- Sentinel-1 GRD assets without any ``proj:*``: the files are georeferenced by ground control points;
  ``georeferencing`` says so and readers warp them (see kz_pipelines.ingest).
- Reprocessing: the same acquisition can be published twice (Earth Search ``..._0_L2A`` and ``..._1_L2A``,
  baselines 02.14 and 05.00); `deduplicate` keeps the newest baseline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import pystac

from kz_pipelines.errors import UserFacingError
from kz_pipelines.tiles import UnknownTileError, s2_tile

__all__ = [
    "S2_NATIVE_RESOLUTION",
    "BandAsset",
    "ItemNormalizationError",
    "SceneItem",
    "deduplicate",
    "normalize_item",
]

S2_NATIVE_RESOLUTION: dict[str, float] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
    "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20, "SCL": 20, "AOT": 20, "WVP": 20,
}  # fmt: skip
"""Native ground sampling of each Sentinel-2 band and L2A layer, metres."""

_REFLECTANCE = {b for b in S2_NATIVE_RESOLUTION if b.startswith("B")}
_AUX_SCALE = {"AOT": 0.001, "WVP": 0.001}  # L2A AOT/WVP quantification values (1000)
_COMMON_NAMES = {
    "coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
    "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
    "swir22": "B12", "scl": "SCL", "aot": "AOT", "wvp": "WVP",
}  # fmt: skip
_S1_POLARIZATIONS = ("VV", "VH", "HH", "HV")
BOA_OFFSET_BASELINE = "04.00"
"""From this processing baseline (25 January 2022) S2 digital numbers carry a +1000 offset."""
_BOA_OFFSET_DATE = date(2022, 1, 25)
_PRODUCT_ID = re.compile(r"_N(?P<baseline>\d{4})_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_")
_RASTER_TYPES = ("image/tiff", "image/jp2", "application/x-geotiff")

Quantity = Literal["reflectance", "classes", "aux", "sigma0", "gamma0", "dn", "coherence"]


class ItemNormalizationError(UserFacingError, ValueError):
    """An item that cannot be used: not Sentinel-1/2, or missing what a reader needs."""


@dataclass(frozen=True)
class BandAsset:
    """One band of one item, as a reader needs it.

    Attributes:
        name: canonical band name (``B04``, ``B8A``, ``SCL``, ``AOT``, ``WVP``; ``VV``, ``VH``, ``HH``,
            ``HV``, ``COH_VV``).
        asset: the item's asset key it was taken from.
        href: where the file is.
        resolution: native ground sampling, metres (None when the item does not say: SAR in radar
            geometry).
        dtype: data type of the stored values.
        nodata: stored value meaning "no data" (None: none declared).
        scale: physical = stored * scale + offset.
        offset: see scale.
        quantity: what the physical value is: reflectance, classes (SCL), aux (AOT, WVP), sigma0 or gamma0
            (linear power), dn (uncalibrated SAR digital numbers), coherence.
        scale_source: where scale and offset came from (``raster:bands``, ``raster:scale``,
            ``earthsearch:boa_offset_applied``, ``processing baseline``, ``acquisition date``,
            ``convention``).
        transform: the grid the item declares for the asset (``proj:transform``, 6 affine coefficients), if
            any. Readers trust the file's own georeferencing; this says what extent the item covers.
        shape: (rows, cols) declared with ``transform``.
    """

    name: str
    asset: str
    href: str
    resolution: float | None
    dtype: str | None
    nodata: float | None
    scale: float
    offset: float
    quantity: Quantity
    scale_source: str
    transform: tuple[float, ...] | None = None
    shape: tuple[int, int] | None = None


@dataclass(frozen=True)
class SceneItem:
    """A Sentinel-1 or Sentinel-2 item, the same whichever provider published it.

    Attributes:
        id: the provider's item id.
        collection: the provider's collection id.
        provider: provider profile name (``local``, ``earth-search``, ``planetary-computer``, ``cdse``) or
            ``unknown``.
        mission: ``sentinel-2`` or ``sentinel-1``.
        product: ``L2A``, ``L1C``, ``GRD`` or ``RTC``.
        platform: ``sentinel-2a``, ``sentinel-1a``...
        datetime: acquisition time (UTC).
        tile_id: MGRS tile (Sentinel-2), None for Sentinel-1.
        epsg: EPSG code of the bands' grid; for GCP-georeferenced SAR, of the GCPs if the item says.
        georeferencing: ``grid`` (affine transform in a CRS) or ``gcps`` (ground control points).
        orbit_state: ``ascending`` / ``descending`` or None when the item does not say.
        relative_orbit: relative orbit (track) number, or None.
        processing_baseline: e.g. ``05.11`` (Sentinel-2) or the IPF version (Sentinel-1), or None.
        polarizations: SAR polarizations, empty for Sentinel-2.
        cloud_cover: ``eo:cloud_cover`` in %, or None.
        bands: canonical band name -> BandAsset.
    """

    id: str
    collection: str
    provider: str
    mission: str
    product: str
    platform: str
    datetime: datetime
    tile_id: str | None
    epsg: int | None
    georeferencing: Literal["grid", "gcps"]
    orbit_state: str | None
    relative_orbit: int | None
    processing_baseline: str | None
    polarizations: tuple[str, ...]
    cloud_cover: float | None
    bands: dict[str, BandAsset] = field(default_factory=dict)

    def band(self, name: str) -> BandAsset:
        """The band ``name``.

        Raises:
            ItemNormalizationError: naming the item and the band, if the item has no such band.
        """
        try:
            return self.bands[name]
        except KeyError:
            raise ItemNormalizationError(
                f"item {self.id}: no asset for band {name} (has {', '.join(self.bands) or 'none'})"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetime as RFC 3339)."""
        out = asdict(self)
        out["datetime"] = self.datetime.isoformat().replace("+00:00", "Z")
        out["polarizations"] = list(self.polarizations)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneItem:
        """The inverse of `to_dict`."""
        values = dict(data)
        values["datetime"] = datetime.fromisoformat(str(values["datetime"]).replace("Z", "+00:00"))
        values["polarizations"] = tuple(values["polarizations"])
        values["bands"] = {
            k: BandAsset(**{**v, **{f: tuple(v[f]) for f in ("transform", "shape") if v.get(f)}})
            for k, v in values["bands"].items()
        }
        return cls(**values)


def _detect_provider(item: Mapping[str, Any]) -> str:
    """Which provider published the item, from what only that provider writes."""
    props = item.get("properties", {})
    hrefs = " ".join(str(a.get("href", "")) for a in item.get("assets", {}).values())
    links = " ".join(str(link.get("href", "")) for link in item.get("links", []))
    software = props.get("processing:software") or {}
    if isinstance(software, dict) and "kz_pipelines.sim" in software:
        return "local"
    if (
        any(k.startswith("earthsearch:") for k in props)
        or "earth-search" in links
        or "sentinel-cogs" in hrefs
    ):
        return "earth-search"
    if "planetarycomputer" in links + hrefs or "blob.core.windows.net" in hrefs:
        return "planetary-computer"
    if "dataspace.copernicus.eu" in links or "s3://eodata/" in hrefs or "/eodata/" in hrefs:
        return "cdse"
    return "unknown"


def _mission(item: Mapping[str, Any]) -> str:
    props = item.get("properties", {})
    text = " ".join(
        str(v).lower() for v in (props.get("platform"), props.get("constellation"), item.get("collection"))
    )
    if "sentinel-2" in text or "sentinel2" in text:
        return "sentinel-2"
    if "sentinel-1" in text or "sentinel1" in text:
        return "sentinel-1"
    raise ItemNormalizationError(
        f"item {item.get('id')}: not a Sentinel-1 or Sentinel-2 item "
        f"(platform {props.get('platform')!r}, collection {item.get('collection')!r})"
    )


def _product_id(item: Mapping[str, Any]) -> str:
    props = item.get("properties", {})
    return str(
        props.get("s2:product_uri") or props.get("sentinel:product_id") or props.get("s1:product_identifier")
        or item.get("id", "")
    )  # fmt: skip


def _s2_tile_id(item: Mapping[str, Any], epsg: int | None) -> str:
    props = item.get("properties", {})
    raw: str | None = None
    if props.get("s2:mgrs_tile"):
        raw = str(props["s2:mgrs_tile"])
    elif str(props.get("grid:code", "")).startswith("MGRS-"):
        raw = str(props["grid:code"])[5:]
    elif props.get("mgrs:utm_zone") is not None and props.get("mgrs:grid_square"):
        raw = f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}"
    elif props.get("sentinel:grid_square") and props.get("sentinel:latitude_band"):
        zone = props.get("sentinel:utm_zone") or (epsg % 100 if epsg else None)
        if zone is not None:
            raw = f"{int(zone):02d}{props['sentinel:latitude_band']}{props['sentinel:grid_square']}"
    if raw is None and (m := _PRODUCT_ID.search(_product_id(item))):
        raw = m.group("tile")
    if raw is None:
        raise ItemNormalizationError(f"item {item.get('id')}: no MGRS tile id in its properties or id")
    try:
        return s2_tile(raw).tile_id
    except UnknownTileError as exc:
        raise ItemNormalizationError(f"item {item.get('id')}: {exc}") from None


def _epsg_of(obj: Mapping[str, Any]) -> int | None:
    code = obj.get("proj:code")
    if code and str(code).upper().startswith("EPSG:"):
        return int(str(code)[5:])
    epsg = obj.get("proj:epsg")
    return int(epsg) if epsg else None


def _baseline(item: Mapping[str, Any], mission: str) -> str | None:
    props = item.get("properties", {})
    for key in ("s2:processing_baseline", "processing:version", "sentinel:processing_baseline"):
        if props.get(key):
            return str(props[key])
    if mission == "sentinel-2" and (m := _PRODUCT_ID.search(_product_id(item))):
        b = m.group("baseline")
        return f"{b[:2]}.{b[2:]}"
    return None


def _s1_relative_orbit(platform: str, absolute: int) -> int | None:
    """Relative orbit from the absolute one (Sentinel-1 product specification, 175-orbit repeat)."""
    first = {"sentinel-1a": 73, "sentinel-1b": 27}.get(platform)
    return None if first is None else (absolute - first) % 175 + 1


def _relative_orbit(item: Mapping[str, Any], mission: str, platform: str) -> int | None:
    props = item.get("properties", {})
    if props.get("sat:relative_orbit") is not None:
        return int(props["sat:relative_orbit"])
    if mission == "sentinel-2" and (m := _PRODUCT_ID.search(_product_id(item))):
        return int(m.group("orbit"))
    if mission == "sentinel-1" and props.get("sat:absolute_orbit") is not None:
        return _s1_relative_orbit(platform, int(props["sat:absolute_orbit"]))
    return None


def _is_raster(asset: Mapping[str, Any]) -> bool:
    media = str(asset.get("type", ""))
    if media:
        return media.startswith(_RASTER_TYPES)
    return str(asset.get("href", "")).lower().endswith((".tif", ".tiff", ".jp2"))


def _band_name(key: str, asset: Mapping[str, Any], mission: str) -> str | None:
    """Canonical band name of an asset, or None for assets that are not single bands we use."""
    k = re.sub(r"(-jp2|_\d+m)$", "", key.lower())
    if mission == "sentinel-1":
        if k.upper() in _S1_POLARIZATIONS:
            return k.upper()
        return "COH_VV" if k == "coh_vv" else None
    if k in _COMMON_NAMES:
        return _COMMON_NAMES[k]
    if re.fullmatch(r"b(0[1-9]|1[0-2]|8a)", k):
        return k.upper()
    described = asset.get("eo:bands") or asset.get("bands") or []
    if len(described) == 1:
        name = str(described[0].get("name", "")).lower()
        return _COMMON_NAMES.get(name) or (
            name.upper() if re.fullmatch(r"b(0[1-9]|1[0-2]|8a)", name) else None
        )
    return None


def _resolution(key: str, asset: Mapping[str, Any], raster: Mapping[str, Any]) -> float | None:
    if m := re.search(r"_(\d+)m$", key):
        return float(m.group(1))
    for value in (raster.get("spatial_resolution"), asset.get("gsd")):
        if value:
            return float(value)
    transform = asset.get("proj:transform")
    if transform:
        return abs(float(transform[0]))
    shape = asset.get("proj:shape")
    if shape and int(shape[0]) in (10980, 5490, 1830):
        return 109800.0 / int(shape[0])
    return None


def _declared(asset: Mapping[str, Any], props: Mapping[str, Any], key: str, n: int) -> Any:
    """``key`` of the asset (or of the item, for single-grid items), as a tuple of its first n values."""
    value = asset.get(key) or props.get(key)
    return tuple(value[:n]) if value else None


def _has_offset(baseline: str | None, when: datetime) -> tuple[bool, str]:
    if baseline is not None:
        return baseline >= BOA_OFFSET_BASELINE, "processing baseline"
    return when.date() >= _BOA_OFFSET_DATE, "acquisition date"


def _scale_offset(
    name: str, raster: Mapping[str, Any], asset: Mapping[str, Any], props: Mapping[str, Any],
    baseline: str | None, when: datetime,
) -> tuple[float, float, str]:  # fmt: skip
    """Scale, offset and where they came from, for one Sentinel-2 band."""
    if name == "SCL":
        return 1.0, 0.0, "convention"
    flag = props.get("earthsearch:boa_offset_applied")
    if name in _REFLECTANCE and flag is not None:
        offset_in_data = not flag and _has_offset(baseline, when)[0]
        return 1e-4, (-0.1 if offset_in_data else 0.0), "earthsearch:boa_offset_applied"
    if "scale" in raster or "offset" in raster:
        return float(raster.get("scale", 1.0)), float(raster.get("offset", 0.0)), "raster:bands"
    if "raster:scale" in asset or "raster:offset" in asset:
        return float(asset.get("raster:scale", 1.0)), float(asset.get("raster:offset", 0.0)), "raster:scale"
    if name in _AUX_SCALE:
        return _AUX_SCALE[name], 0.0, "convention"
    has_offset, source = _has_offset(baseline, when)
    return 1e-4, (-0.1 if has_offset else 0.0), source


def _s2_quantity(name: str) -> Quantity:
    if name == "SCL":
        return "classes"
    return "aux" if name in _AUX_SCALE else "reflectance"


def _s1_quantity(name: str, collection: str, provider: str, dtype: str | None) -> Quantity:
    if name == "COH_VV":
        return "coherence"
    if "rtc" in collection:
        return "gamma0"
    if provider == "local" or (dtype or "").startswith("float"):
        return "sigma0"
    return "dn"


def _preference(name: str, asset: Mapping[str, Any], resolution: float | None) -> tuple[int, int, float]:
    """Sort key among assets of one band: native resolution first, then COG, then finer."""
    native = S2_NATIVE_RESOLUTION.get(name)
    cog = "tiff" in str(asset.get("type", "")) or str(asset.get("href", "")).lower().endswith(
        (".tif", ".tiff")
    )
    return (0 if native is None or resolution == native else 1, 0 if cog else 1, resolution or 0.0)


def normalize_item(item: pystac.Item | Mapping[str, Any], provider: str | None = None) -> SceneItem:
    """Read a Sentinel-1 or Sentinel-2 STAC item from any provider into a `SceneItem`.

    Args:
        item: a pystac Item or the item's JSON as a dict.
        provider: the provider profile it came from; detected from the item when None.

    Raises:
        ItemNormalizationError: naming the item and what is missing, for an item that cannot be used
            (not Sentinel, no datetime, no usable band, no tile for a Sentinel-2 item).
    """
    data: Mapping[str, Any] = item.to_dict(transform_hrefs=False) if isinstance(item, pystac.Item) else item
    item_id = str(data.get("id", "<no id>"))
    props = data.get("properties", {})
    mission = _mission(data)
    provider = provider or _detect_provider(data)
    collection = str(data.get("collection", ""))
    raw_time = props.get("datetime") or props.get("start_datetime")
    if not raw_time:
        raise ItemNormalizationError(f"item {item_id}: no datetime")
    when = datetime.fromisoformat(str(raw_time).replace("Z", "+00:00")).astimezone(UTC)
    platform = str(props.get("platform", "")).lower()
    baseline = _baseline(data, mission)
    epsg = _epsg_of(props)
    candidates: dict[str, list[tuple[tuple[int, int, float], BandAsset]]] = {}
    for key, asset in data.get("assets", {}).items():
        if not _is_raster(asset) or "visual" in (asset.get("roles") or []):
            continue
        name = _band_name(key, asset, mission)
        if name is None:
            continue
        raster = (asset.get("raster:bands") or [{}])[0]
        resolution = _resolution(key, asset, raster)
        dtype = raster.get("data_type") or asset.get("data_type")
        # S2 and GRD digital numbers: 0 is no data by product definition
        nodata = raster.get("nodata", asset.get("nodata", 0 if dtype != "float32" else None))
        if mission == "sentinel-2":
            scale, offset, source = _scale_offset(name, raster, asset, props, baseline, when)
            quantity = _s2_quantity(name)
        else:
            scale, offset, source = 1.0, 0.0, "convention"
            quantity = _s1_quantity(name, collection, provider, dtype)
        band = BandAsset(
            name=name, asset=key, href=str(asset["href"]), resolution=resolution,
            dtype=str(dtype) if dtype else None, nodata=float(nodata) if nodata is not None else None,
            scale=scale, offset=offset, quantity=quantity, scale_source=source,
            transform=_declared(asset, props, "proj:transform", 6),
            shape=_declared(asset, props, "proj:shape", 2),
        )  # fmt: skip
        candidates.setdefault(name, []).append((_preference(name, asset, resolution), band))
        epsg = epsg or _epsg_of(asset)
    if not candidates:
        raise ItemNormalizationError(f"item {item_id}: no band assets it could use")
    order = list(S2_NATIVE_RESOLUTION) + [*_S1_POLARIZATIONS, "COH_VV"]
    bands = {n: min(candidates[n], key=lambda c: c[0])[1] for n in sorted(candidates, key=order.index)}
    tile_id = _s2_tile_id(data, epsg) if mission == "sentinel-2" else None
    if mission == "sentinel-2" and epsg is None and tile_id is not None:
        epsg = s2_tile(tile_id).epsg
    # real GRD measurement files are in radar geometry, georeferenced by GCPs, whatever proj:* the item
    # states (Earth Search gives an approximate EPSG:4326 transform of the bbox)
    in_radar_geometry = any(b.quantity == "dn" for b in bands.values())
    georef: Literal["grid", "gcps"] = "gcps" if in_radar_geometry else "grid"
    pols = (
        tuple(str(p).upper() for p in props.get("sar:polarizations", ())) if mission == "sentinel-1" else ()
    )
    return SceneItem(
        id=item_id,
        collection=collection,
        provider=provider,
        mission=mission,
        product=_product(data, mission, collection),
        platform=platform,
        datetime=when,
        tile_id=tile_id,
        epsg=epsg,
        georeferencing=georef,
        orbit_state=str(props["sat:orbit_state"]).lower() if props.get("sat:orbit_state") else None,
        relative_orbit=_relative_orbit(data, mission, platform),
        processing_baseline=baseline,
        polarizations=pols,
        cloud_cover=float(props["eo:cloud_cover"]) if props.get("eo:cloud_cover") is not None else None,
        bands=bands,
    )


def _product(item: Mapping[str, Any], mission: str, collection: str) -> str:
    text = (
        f"{collection} {item.get('id', '')} {item.get('properties', {}).get('s2:product_type', '')}".upper()
    )
    if mission == "sentinel-1":
        return "RTC" if "RTC" in text else "GRD"
    return "L1C" if "L1C" in text else "L2A"


def deduplicate(items: Iterable[SceneItem], within_s: float = 60.0) -> list[SceneItem]:
    """Drop reprocessed duplicates: of items of the same platform, product and tile acquired within
    ``within_s`` seconds, keep the one with the newest processing baseline (then the latest id)."""
    kept: list[SceneItem] = []
    for it in sorted(items, key=lambda i: i.datetime):
        twin = next(
            (
                k for k in kept
                if (k.platform, k.product, k.tile_id, k.relative_orbit) ==
                (it.platform, it.product, it.tile_id, it.relative_orbit)
                and abs((k.datetime - it.datetime).total_seconds()) <= within_s
            ),
            None,
        )  # fmt: skip
        if twin is None:
            kept.append(it)
        elif (it.processing_baseline or "", it.id) > (twin.processing_baseline or "", twin.id):
            kept[kept.index(twin)] = it
    return kept
