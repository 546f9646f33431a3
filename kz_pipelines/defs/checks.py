"""Asset checks generated from the data contracts: every asset carries a blocking `contract` check.

An asset declares the check (``check_specs=contract_check(name)``) and is wrapped by `keeps_contract`,
which, once the asset has written its partition, reads what it wrote (`kz_pipelines.contracts.check`) and
reports the check with the materialization. A broken contract fails the check, which stops the assets
downstream of it in the same run; its metadata lists the failing cases (output, check, where, case).
"""

import functools
from collections.abc import Callable
from typing import Any

import dagster as dg

from kz_pipelines.contracts import Contract, check, load_contracts, output_files, partition_keys
from kz_pipelines.defs.metadata import md_table

_SHOWN = 50
"""Failing cases listed in a check's metadata."""


@functools.cache
def _contracts() -> dict[str, Contract]:
    return load_contracts()


def _contract(name: str) -> Contract:
    try:
        return _contracts()[name]
    except KeyError:
        raise ValueError(f"asset {name} has no contract: add data_contracts/{name}.yaml") from None


def contract_check(name: str) -> list[dg.AssetCheckSpec]:
    """The check spec of asset ``name``'s contract (blocking)."""
    contract = _contract(name)
    description = f"The outputs keep data_contracts/{contract.source.name}: {contract.description}"
    return [dg.AssetCheckSpec("contract", asset=name, blocking=True, description=description)]


def keeps_contract(fn: Callable[..., dg.MaterializeResult]) -> Callable[..., dg.MaterializeResult]:
    """Wrap an asset function (named as its asset, taking ``storage``) so that its result carries the
    contract check of what it wrote."""
    contract = _contract(fn.__name__)

    @functools.wraps(fn)
    def wrapper(context: dg.AssetExecutionContext, **kwargs: Any) -> dg.MaterializeResult:
        result = fn(context, **kwargs)
        key = context.partition_key if context.has_partition_key else None
        storage, keys = kwargs["storage"], partition_keys(key, contract.partitions)
        failures = check(contract, storage.path(), keys)
        for path in output_files(contract, storage.path(), keys):  # to an object store root
            storage.publish_path(path)
        outcome = dg.AssetCheckResult(
            check_name="contract",
            passed=failures.empty,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "failing_cases": len(failures),
                "cases": dg.MetadataValue.md(md_table(failures.head(_SHOWN)) if len(failures) else "none"),
                "contract": dg.MetadataValue.path(str(contract.source)),
            },
        )
        return dg.MaterializeResult(
            metadata={**(result.metadata or {}), **_columns(contract)},
            check_results=[*(result.check_results or []), outcome],
            data_version=result.data_version,
            tags=result.tags,
        )

    return wrapper


def _columns(contract: Contract) -> dict[str, Any]:
    """The column schema (types, units) and column lineage (``from``) of the contract's first table, as
    the Dagster UI shows them."""
    table = next((o for o in contract.outputs if o["format"] in ("parquet", "geoparquet")), None)
    if table is None:
        return {}
    columns = [
        dg.TableColumn(
            name,
            spec["type"],
            description=spec.get("unit"),
            constraints=dg.TableColumnConstraints(nullable=bool(spec.get("nullable", False))),
        )
        for name, spec in table["columns"].items()
    ]
    lineage = {
        name: [dg.TableColumnDep(*source.split(".", 1)) for source in spec["from"]]
        for name, spec in table["columns"].items()
        if "from" in spec
    }
    out: dict[str, Any] = {"dagster/column_schema": dg.TableSchema(columns=columns)}
    if lineage:
        out["dagster/column_lineage"] = dg.TableColumnLineage(lineage)
    return out


def contracts_without_asset(assets: list[dg.AssetsDefinition]) -> list[str]:
    """Contracts naming no asset of ``assets``."""
    names = {a.key.to_user_string() for a in assets}
    return sorted(set(_contracts()) - names)
