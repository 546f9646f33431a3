"""Security: credentials never reach logs, run config, tags, metadata or stored values; nothing is loaded
in a way that could execute code (pickle, unsafe YAML, torch.load of full objects)."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import dagster as dg
import pytest

from kz_pipelines.definitions import defs
from kz_pipelines.stac import providers
from kz_pipelines_tests.conftest import pipeline_resources

SOURCE = Path(__file__).resolve().parents[1] / "kz_pipelines"

SECRETS = {
    "CDSE_S3_ACCESS_KEY": "AKIA-KZ-TEST-ACCESS-7f3a9c",
    "CDSE_S3_SECRET_KEY": "kz-test-secret-key-0d6e2b41",
    "KZ_PG_PASSWORD": "kz-test-db-password-95c1e8",
    "AWS_SECRET_ACCESS_KEY": "kz-test-aws-secret-4b77f0",
}
"""Credentials set for the run (the S3 keys are read by the provider profile and handed to GDAL)."""


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call in ``tree`` with its dotted name (``torch.load``, ``yaml.load``...)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts = []
            f: ast.expr = node.func
            while isinstance(f, ast.Attribute):
                parts.append(f.attr)
                f = f.value
            if isinstance(f, ast.Name):
                parts.append(f.id)
            out.append((".".join(reversed(parts)), node))
    return out


def test_nothing_is_loaded_in_a_way_that_executes_code() -> None:
    unsafe: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + (
                    [node.module] if isinstance(node, ast.ImportFrom) else []
                )
                if any(
                    n and n.split(".")[0] in ("pickle", "dill", "cloudpickle", "joblib", "marshal")
                    for n in names
                ):
                    unsafe.append(f"{path}:{node.lineno} imports a pickle-like module")
        for name, call in _calls(tree):
            keywords = {k.arg: k.value for k in call.keywords}
            where = f"{path.relative_to(SOURCE)}:{call.lineno} {name}"
            if name.endswith("yaml.load") or name in ("yaml.unsafe_load", "yaml.full_load"):
                unsafe.append(f"{where}: use yaml.safe_load")
            if name == "torch.load" and not (
                isinstance(keywords.get("weights_only"), ast.Constant)
                and keywords["weights_only"].value is True
            ):
                unsafe.append(f"{where}: needs weights_only=True")
            if name in ("np.load", "numpy.load") and not (
                isinstance(keywords.get("allow_pickle"), ast.Constant)
                and keywords["allow_pickle"].value is False
            ):
                unsafe.append(f"{where}: needs allow_pickle=False")
            if isinstance(call.func, ast.Name) and name in ("eval", "exec"):
                unsafe.append(f"{where}: eval/exec")
    assert unsafe == []


def test_credentials_stay_out_of_logs_config_metadata_and_values(
    region: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    # the local catalog read as if it needed S3 keys: the profile reads them and hands them to GDAL
    keyed = dataclasses.replace(providers.PROVIDERS["local"], auth="cdse-s3")
    monkeypatch.setitem(providers.PROVIDERS, "local", keyed)
    assert keyed.gdal_env()["AWS_SECRET_ACCESS_KEY"] == SECRETS["CDSE_S3_SECRET_KEY"]
    storage = tmp_path / "storage"
    resources = pipeline_resources(region, storage)
    day = next(p for p in (region / "stac" / "sentinel-2-l2a" / "35VLF").glob("*/*/*") if p.is_dir())
    stamp = day.name.split("_")[2]
    key = dg.MultiPartitionKey({"date": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:]}", "tile": "35VLF"})
    job = dg.Definitions(assets=defs.assets, jobs=defs.jobs, resources=resources).resolve_job_def("ingest")
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("tile", ["35VLF", "35VMF"])
        debug = {"loggers": {"console": {"config": {"log_level": "DEBUG"}}}}
        result = job.execute_in_process(partition_key=key, instance=instance, run_config=debug)
        assert result.success
        assert list(
            storage.glob("scenes/s2_l2a/35VLF/*.zarr")
        )  # the scene was read through the keyed GDAL env
        seen = []
        for run in instance.get_runs():
            seen.append(json.dumps(run.run_config, default=str))
            seen.append(json.dumps(run.tags, default=str))
            for entry in instance.all_logs(run.run_id):
                seen.append(entry.message or "")
                seen.append(repr(entry.dagster_event))
    text = "\n".join(seen)
    stored = [p for p in list(storage.rglob("*")) + list(home.rglob("*")) if p.is_file()]
    for name, value in SECRETS.items():
        assert value not in text, f"{name} in the run's logs, config, tags or metadata"
        for path in stored:
            assert value.encode() not in path.read_bytes(), f"{name} in {path}"
