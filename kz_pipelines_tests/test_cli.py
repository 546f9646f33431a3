"""The `kz` command: help, and one-line errors with a non-zero exit for what the user can fix."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def kz(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kz_pipelines.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_subcommands() -> None:
    out = kz("--help")
    assert out.returncode == 0
    for cmd in ("simulate", "demo", "stac"):
        assert cmd in out.stdout
    assert "serve" in kz("stac", "--help").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "--tiles", "35VLF,99XXX"], "unknown Sentinel-2 tile id '99XXX'"),
        (["simulate", "--size-px", "10"], "size_px: must be"),
        (["simulate", "--start", "2024-02-30"], "--start: '2024-02-30' is not a date"),
        (["simulate", "--out", "/proc/kz-region"], "cannot write in /proc"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: list[str], message: str) -> None:
    out = kz(*args)
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert message in lines[0]
    assert "Traceback" not in out.stderr


def test_unwritable_output_dir(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        out = kz("simulate", "--out", str(locked / "region"), "--parcels", "4", "--tiles", "35VLF")
        if out.returncode == 0:
            pytest.skip("running as a user that ignores directory permissions")
        assert out.returncode == 2
        assert "kz: error:" in out.stderr
        assert "Traceback" not in out.stderr
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_port_in_use(region: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = kz("stac", "serve", "--catalog", str(region), "--port", str(port))
    assert out.returncode == 2
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0]


def test_stac_inspect_every_real_item(shared_data: Path) -> None:
    for path in sorted((shared_data / "stac_items").glob("*.json")):
        out = kz("stac", "inspect", str(path))
        assert out.returncode == 0, (path.name, out.stderr)
        item = json.loads(out.stdout)
        for band in item["bands"].values():
            assert {"href", "scale", "offset", "nodata", "resolution"} <= set(band)
        assert {"tile_id", "epsg", "relative_orbit", "orbit_state", "processing_baseline"} <= set(item)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"type": "Feature", "id": "LC09_X", "properties": {"platform": "landsat-9"}, "assets": {}}',
            "item LC09_X: not a Sentinel",
        ),
        ('{"type": "FeatureCollection", "features": []}', "not a STAC item"),
        ("{not json", "not a readable JSON file"),
    ],
)
def test_stac_inspect_refuses_what_it_cannot_use(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "item.json"
    path.write_text(content)
    out = kz("stac", "inspect", str(path))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
def test_bench_ingest_json_has_the_design_shape(tmp_path: Path) -> None:
    out = kz("bench", "ingest", "--json", "--size-px", "240", "--work", str(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "ingest"
    assert "cores" in result["hardware"]
    assert set(result["targets"]) == {"throughput_ratio_vs_rasterio", "peak_memory_vs_output"}
    ratio = result["targets"]["throughput_ratio_vs_rasterio"]
    assert (ratio["op"], ratio["target"]) == (">=", 0.7)
    assert ratio["value"] > 0
    assert result["figures"]["tile_px"] == "12x240x240"
    assert result["figures"]["raw_rasterio_mpx_per_s"] > 0


@pytest.mark.slow
def test_bench_ingest_peak_memory_is_the_loads_own(tmp_path: Path) -> None:
    """The child process measuring the load must not report its parent's peak: after this process has
    touched 1 GiB (as simulating a full tile does, ~9 GB), the load's own peak still shows."""
    from kz_pipelines.bench.ingest import run

    big = np.ones(2**27)  # 1 GiB resident in the parent, then freed
    del big
    result = run(tmp_path, size_px=1200, log=lambda _: None)
    assert result.figures["output_array_gib"] > 0
    # the load holds at least its output array; an inherited high-water mark made this exactly 0
    assert result.targets["peak_memory_vs_output"].value >= 1.0


@pytest.mark.slow
def test_bench_cloudmask_json_names_every_target(tmp_path: Path) -> None:
    out = kz("bench", "cloudmask", "--json", "--size-px", "240", "--device", "cpu", "--work", str(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "cloudmask"
    assert set(result["targets"]) == {"cpu_end_to_end_s", "gpu_inference_s", "gpu_end_to_end_s"}
    assert result["targets"]["cpu_end_to_end_s"]["target"] == 360.0
    assert all(t["value"] is None and not t["met"] for t in result["targets"].values())  # not a full tile
    assert result["figures"]["gflop_per_subtile"] > 0
    assert result["figures"]["end_to_end_s"] >= result["figures"]["inference_s"] > 0
    assert (tmp_path / "cloudmask-240.tif").is_file()


@pytest.mark.slow
def test_bench_zonal_json_names_every_target(tmp_path: Path) -> None:
    out = kz("bench", "zonal", "--json", "--size-px", "1200", "--parcels", "60", "--work", str(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "zonal"
    assert set(result["targets"]) == {"ours_over_exactextract", "max_abs_diff_vs_rasterstats"}
    assert result["targets"]["ours_over_exactextract"]["target"] == 5.0
    exact = result["targets"]["max_abs_diff_vs_rasterstats"]
    assert exact["met"], exact  # equal to rasterstats on every parcel of the subset
    figures = result["figures"]
    assert figures["parcels"] == 60
    assert figures["rasterstats_parcels"] == 60
    for engine in ("ours", "exactextract", "rasterstats"):
        assert figures[f"{engine}_parcel_band_dates_per_s"] > 0
    assert figures["national_season_hours_ours"] > 0


@pytest.mark.slow
def test_bench_croptype_json_names_every_target() -> None:
    out = kz(
        "bench", "croptype", "--json", "--parcels", "3000", "--dates", "8", "--features", "4", timeout=600
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "croptype"
    assert set(result["targets"]) == {"lightgbm_train_s", "score_parcels_per_s"}
    assert result["targets"]["lightgbm_train_s"]["target"] == 600.0
    assert result["targets"]["score_parcels_per_s"]["target"] == 100000.0
    figures = result["figures"]
    assert figures["columns"] == 8 * 4 + 9 * 4
    assert figures["lightgbm_parcels_per_s"] > 0
    assert figures["mlp_parcels_per_s"] > 0
    assert figures["tcnn_parcels_per_s"] > 0
    selected = figures["selected_on_validation"]
    assert selected in ("lightgbm", "mlp", "tcnn", "ensemble")
    score = result["targets"]["score_parcels_per_s"]["value"]
    assert score == pytest.approx(figures[f"{selected}_parcels_per_s"], abs=1)


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_orchestration_json_measures_a_real_backfill(postgres: dict[str, str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "KZ_PG_HOST": postgres["host"],
        "KZ_PG_PORT": postgres["port"],
        "KZ_PG_USER": postgres["user"],
        "KZ_PG_PASSWORD": postgres["password"],
    }
    args = ["bench", "orchestration", "--json", "--tiles", "2", "--days", "2", "--work", str(tmp_path / "o")]
    args += ["--pg-db", "kz_test_bench_orchestration"]  # not the database of a benchmark being run
    command = [sys.executable, "-m", "kz_pipelines.cli", *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "orchestration"
    assert set(result["targets"]) == {"stalls", "partitions_failed"}
    assert all(t["met"] for t in result["targets"].values()), result["targets"]
    figures = result["figures"]
    assert figures["backfill_status"] == "COMPLETED_SUCCESS"
    assert figures["partitions"] == figures["partitions_materialized"] == 4
    assert figures["asset_partitions_materialized"] == 4 * figures["assets"]
    assert figures["daemons_unhealthy"] == "none"
    assert figures["mask_step_torch_load_s"] > 0  # the code location itself loads without torch
    assert figures["partitions_per_min"] > 0
    assert figures["daemon_backfill_ticks"] > 0  # read from the real daemon's log
    assert 0 < figures["graphql_partition_stats_median_s"] <= figures["graphql_partition_stats_max_s"]
    for tiles in (6, 100):
        assert figures[f"{tiles}_tiles_wall_hours"] > 0
    assert figures["100_tiles_cpu_hours"] > figures["6_tiles_cpu_hours"]


def test_tiles_add_registers_partitions_and_refuses_unknown_ids(tmp_path: Path) -> None:
    import dagster as dg

    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    add = [sys.executable, "-m", "kz_pipelines.cli", "tiles", "add"]
    assert subprocess.run([*add, "35VLF", "35VMF"], env=env).returncode == 0
    bad = subprocess.run([*add, "35VNF", "99XXX"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert "99XXX: not an MGRS tile" in bad.stderr
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_dynamic_partitions("tile") == ["35VLF", "35VMF"]  # nothing of the refused call


@pytest.fixture(scope="module")
def eval_work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The evaluations' quick pipeline runs, shared by their tests (``--reuse``)."""
    return tmp_path_factory.mktemp("eval")


@pytest.mark.slow
def test_eval_croptype_quick_names_every_target(eval_work: Path) -> None:
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "worldcereal_lpis"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    # the first evaluation runs the pipeline on both quick seeds (minutes on 2 cores)
    args = ("eval", "croptype", "--json", "--quick", "--folds", "2", "--work", str(eval_work), "--reuse")
    out = kz(*args, timeout=900)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["name"] == "croptype"
    expected = {
        f"{name}_ours_minus_best_baseline_{avg}_f1"
        for name in ("fra_2023_dekad", "fra_2022_month")
        for avg in ("macro", "weighted")
    }
    assert set(result["targets"]) == expected | {"sim_heldout_macro_f1"}
    figures = result["figures"]
    # the held-out seed went through the pipeline: every one of its parcels scored against its truth
    assert figures["sim_heldout_parcels"] == 40
    assert 0 <= result["targets"]["sim_heldout_macro_f1"]["value"] <= 1
    assert (eval_work / "heldout_confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert figures["fra_2023_dekad_parcels"] == 417  # the samples whose ewoc_code has a class here
    for model in ("ours", "random_forest", "lightgbm_plain"):
        assert 0 < figures[f"fra_2022_month_{model}_macro_f1"] <= 1


@pytest.mark.slow
def test_eval_events_quick_names_every_target(eval_work: Path) -> None:
    out = kz("eval", "events", "--json", "--quick", "--work", str(eval_work), "--reuse", timeout=900)
    assert out.returncode == 0, out.stderr
    last = out.stdout.strip().splitlines()[-1]
    result = json.loads(last, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert result["name"] == "events"
    assert set(result["targets"]) == {
        "mowing_f1",
        "harvest_f1",
        "harvest_mae_days",
        "ploughing_f1",
        "ploughing_mae_days",
        "emergence_mae_days",
        "damage_area_error",
        "damage_iou",
        "tillage_f1",
    }
    figures = result["figures"]
    assert figures["test_parcels"] == 40
    measured = 0
    for product in ("mowing", "ploughing_harvest", "emergence", "tillage"):  # side by side, both variants
        for variant in ("", "cloudy_"):
            sides = [
                any(k.startswith(f"{product}_{variant}{m}_") for k in figures)
                for m in ("baseline", "learned")
            ]
            # three weeks of June may hold too little of a product to train it: then the reason is given
            reason = figures.get(f"{product}_{variant}not_measured")
            assert all(sides) or (not any(sides) and isinstance(reason, str) and reason), (product, variant)
            measured += all(sides)
    assert measured >= 4
