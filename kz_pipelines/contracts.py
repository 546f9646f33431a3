"""Data contracts: what every asset writes, declared in ``data_contracts/<asset>.yaml`` and checked.

A contract names the asset, its partition dimensions and its outputs: each a path under the storage root
(``{date}``, ``{tile}``, ``{season}`` filled from the partition key; ``*`` for several files), a format,
whether it must exist, and what it holds:

* ``parquet`` / ``geoparquet``: columns with a type (``string``, ``int``, ``float``, ``bool``,
  ``datetime``, ``geometry``), ``nullable``, ``min`` / ``max`` / ``isin``, a ``unit`` for people; a
  column name may be a regular expression (``regex: true``); ``unique`` keys; no other columns. Checked
  with pandera: every failing row is reported. ``from: [asset.column]`` names where a column comes from
  (shown as column lineage in the UI, with the column schema).
* ``zarr``: dims, coordinate values (``isin``), variables with their dims, type and range.
* ``cog``: band count, dtype and the values or range the pixels may take.
* ``json``: required keys; ``points_to`` names a key holding a folder that must contain one file of
  each ``contains`` group (alternatives separated by ``|``).

:func:`check` returns the failing cases as a table (output, check, where, case), empty when the outputs
keep the contract; `kz_pipelines.defs.checks` turns every contract into a blocking Dagster asset check.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

__all__ = [
    "CONTRACTS",
    "FAILURE_COLUMNS",
    "Contract",
    "check",
    "load_contracts",
    "output_files",
    "partition_keys",
]

CONTRACTS = Path(__file__).resolve().parents[1] / "data_contracts"
"""The contracts folder (one YAML per asset; crop_taxonomy.yaml is the taxonomy, not a contract)."""

FAILURE_COLUMNS = ["output", "check", "where", "case"]


@dataclass(frozen=True)
class Contract:
    """One asset's contract (see the module docstring for the fields).

    Attributes:
        asset: the asset key.
        partitions: its partition dimensions (``date``, ``tile``, ``season``), empty if unpartitioned.
        outputs: what it writes.
        description: what the values mean, for people.
    """

    asset: str
    partitions: tuple[str, ...]
    outputs: tuple[dict[str, Any], ...]
    description: str = ""
    source: Path = field(default=Path(), compare=False)


def load_contracts(folder: Path = CONTRACTS) -> dict[str, Contract]:
    """Every contract in ``folder``, by asset (YAML read safely).

    Raises:
        ValueError: a file that is not a contract of one asset, or two contracts of one asset.
    """
    out: dict[str, Contract] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        if not isinstance(raw, dict) or "asset" not in raw:
            continue  # the taxonomy and other reference tables
        if raw["asset"] in out:
            raise ValueError(f"{path}: a second contract for {raw['asset']}")
        outputs = raw.get("outputs")
        if not outputs:
            raise ValueError(f"{path}: no outputs")
        out[raw["asset"]] = Contract(
            raw["asset"], tuple(raw.get("partitions", [])), tuple(outputs), raw.get("description", ""), path
        )
    return out


def _files(root: Path, pattern: str, keys: Mapping[str, str]) -> list[Path]:
    path = pattern.format(**keys)
    return sorted(root.glob(path)) if "*" in path else ([root / path] if (root / path).exists() else [])


def output_files(contract: Contract, root: Path, keys: Mapping[str, str]) -> list[Path]:
    """The outputs of one partition found under ``root`` (files, and folders such as Zarr stores)."""
    return [path for output in contract.outputs for path in _files(Path(root), output["path"], keys)]


def check(contract: Contract, root: Path, keys: Mapping[str, str]) -> pd.DataFrame:
    """The failing cases of the outputs of one partition (``keys``: dimension -> key) under ``root``."""
    failures: list[tuple[str, str, str, str]] = []
    for output in contract.outputs:
        files = _files(Path(root), output["path"], keys)
        if not files:
            if output.get("required", True):
                failures.append((output["path"].format(**keys), "exists", "", "missing"))
            continue
        for path in files:
            name = str(path.relative_to(root))
            try:
                found = _CHECKERS[output["format"]](path, output)
            except Exception as exc:  # an unreadable file breaks the contract too
                found = [("readable", "", f"{type(exc).__name__}: {exc}")]
            failures += [(name, *f) for f in found]
    return pd.DataFrame(failures, columns=FAILURE_COLUMNS)


_Found = list[tuple[str, str, str]]


def _type_check(kind: str) -> Callable[[pd.Series], bool | pd.Series]:
    from pandas.api import types

    def is_bool(s: pd.Series) -> bool:
        return bool(types.is_bool_dtype(s) or s.dropna().map(lambda v: isinstance(v, bool | np.bool_)).all())

    def is_string(s: pd.Series) -> bool:
        if isinstance(s.dtype, pd.CategoricalDtype):
            s = s.astype(object)
        return bool(types.is_string_dtype(s) or s.dropna().map(lambda v: isinstance(v, str)).all())

    return {
        "string": is_string,
        "int": lambda s: bool(types.is_integer_dtype(s)),
        "float": lambda s: bool(types.is_float_dtype(s)),
        "bool": is_bool,
        "datetime": lambda s: bool(types.is_datetime64_any_dtype(s)),
        "geometry": lambda s: str(s.dtype) == "geometry",
    }[kind]


def _table(path: Path, spec: Mapping[str, Any]) -> _Found:
    import pandera.pandas as pa

    if spec["format"] == "geoparquet":
        import geopandas as gpd

        frame: pd.DataFrame = gpd.read_parquet(path)
    else:
        frame = pd.read_parquet(path)
    frame = frame.reset_index(drop=True)  # rows are reported by position
    columns = {}
    for name, col in spec["columns"].items():
        checks = [pa.Check(_type_check(col["type"]), name=f"type {col['type']}")]
        if "min" in col:
            checks.append(pa.Check.ge(col["min"]))
        if "max" in col:
            checks.append(pa.Check.le(col["max"]))
        if "isin" in col:
            checks.append(pa.Check.isin(col["isin"]))
        columns[name] = pa.Column(
            checks=checks, nullable=bool(col.get("nullable", False)), regex=bool(col.get("regex", False))
        )
    schema = pa.DataFrameSchema(columns, strict=True, unique=spec.get("unique"), coerce=False)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return [
            (str(r["check"]), str(r["column"]), f"{r['failure_case']} (row {r['index']})")
            for r in cases.head(200).to_dict("records")
        ]
    return []


def _zarr(path: Path, spec: Mapping[str, Any]) -> _Found:
    import xarray as xr

    ds = xr.open_zarr(path)
    found: _Found = []
    missing = set(spec.get("dims", [])) - set(ds.dims)
    if missing:
        found.append(("dims", ",".join(sorted(missing)), "missing"))
    for name, coord in spec.get("coords", {}).items():
        if name not in ds.coords:
            found.append(("coords", name, "missing"))
        elif "isin" in coord:
            bad = sorted({str(v) for v in ds[name].to_numpy()} - {str(v) for v in coord["isin"]})
            if bad:
                found.append(("isin", name, ", ".join(bad[:20])))
    for name, var in spec.get("variables", {}).items():
        if name not in ds:
            found.append(("variables", name, "missing"))
            continue
        v = ds[name]
        if list(v.dims) != list(var["dims"]):
            found.append(("dims", name, f"{list(v.dims)} != {var['dims']}"))
        kind = {"float": np.floating, "int": np.integer, "bool": np.bool_}[var["type"]]
        if not np.issubdtype(v.dtype, kind):
            found.append((f"type {var['type']}", name, str(v.dtype)))
            continue
        if var["type"] == "float":
            values = v.to_numpy()
            finite = values[np.isfinite(values)]
            if np.isinf(values).any():
                found.append(("finite", name, f"{int(np.isinf(values).sum())} infinite values"))
            if "min" in var and finite.size and finite.min() < var["min"]:
                found.append((f"greater_than_or_equal_to({var['min']})", name, str(finite.min())))
            if "max" in var and finite.size and finite.max() > var["max"]:
                found.append((f"less_than_or_equal_to({var['max']})", name, str(finite.max())))
    return found


def _cog(path: Path, spec: Mapping[str, Any]) -> _Found:
    import rasterio

    found: _Found = []
    with rasterio.open(path) as src:
        if src.count != spec.get("count", src.count):
            found.append(("count", "bands", str(src.count)))
        if src.dtypes[0] != spec.get("dtype", src.dtypes[0]):
            found.append((f"dtype {spec['dtype']}", "band 1", src.dtypes[0]))
        if src.crs is None:
            found.append(("crs", "", "no CRS"))
        values = src.read(1)
    if "isin" in spec:
        bad = sorted(set(np.unique(values).tolist()) - set(spec["isin"]))
        if bad:
            found.append(("isin", "band 1", ", ".join(map(str, bad[:20]))))
    return found


def _json(path: Path, spec: Mapping[str, Any]) -> _Found:
    data = json.loads(path.read_text())
    found: _Found = [("keys", k, "missing") for k in spec.get("keys", []) if k not in data]
    if "points_to" in spec and spec["points_to"] in data:
        folder = path.parent / data[spec["points_to"]]  # absolute, or relative to the pointer's folder
        for group in spec.get("contains", []):
            if not any((folder / name).is_file() for name in group.split("|")):
                found.append(("contains", str(folder), f"none of {group}"))
    return found


_CHECKERS: dict[str, Callable[[Path, Mapping[str, Any]], _Found]] = {
    "parquet": _table,
    "geoparquet": _table,
    "zarr": _zarr,
    "cog": _cog,
    "json": _json,
}


def partition_keys(partition_key: str | None, dims: tuple[str, ...]) -> dict[str, str]:
    """Dimension -> key of a Dagster partition key (``2024-06-01|35VLF`` for date x tile, the dimension
    names in alphabetical order as Dagster joins them; ``2024`` for a season)."""
    if not dims:
        return {}
    parts = (partition_key or "").split("|")
    names = sorted(dims) if len(dims) > 1 else list(dims)
    if len(parts) != len(names):
        raise ValueError(f"partition key {partition_key!r} does not match dimensions {names}")
    return dict(zip(names, parts, strict=True))
