"""The `kz` command: simulate a region, serve it as a STAC API, run the demo.

Errors the user can fix (bad configuration, unwritable folder, port in use, unknown tile) end in one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kz_pipelines.errors import UserFacingError
from kz_pipelines.sim.config import DEFAULT_TILES, SimConfig

__all__ = ["app", "main"]

app = typer.Typer(
    help="kz_pipelines: Sentinel-1/Sentinel-2 parcel monitoring on Dagster.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stac_app = typer.Typer(help="Search or serve STAC catalogs.", no_args_is_help=True)
app.add_typer(stac_app, name="stac")
bench_app = typer.Typer(help="Benchmarks: speed and memory against a baseline measured in the same run.")
app.add_typer(bench_app, name="bench")
eval_app = typer.Typer(help="Evaluations: quality on data the model never trained on.")
app.add_typer(eval_app, name="eval")
tiles_app = typer.Typer(help="The tiles of the deployment (the `tile` partitions).", no_args_is_help=True)
app.add_typer(tiles_app, name="tiles")
err = Console(stderr=True)
DEFAULT_REGION = Path("var/region")


def _date(text: str, name: str) -> date:
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise UserFacingError(f"{name}: {text!r} is not a date (YYYY-MM-DD)") from None


def sim_config(
    seed: int, tiles: str, size_px: int, start: str, end: str, parcels: int, l1c: bool
) -> SimConfig:
    """Build and validate a SimConfig from command-line values."""
    tile_list = tuple(t.strip() for t in tiles.split(",") if t.strip())
    return SimConfig(
        seed=seed,
        tiles=tile_list,
        size_px=size_px,
        start=_date(start, "--start"),
        end=_date(end, "--end"),
        n_parcels=parcels,
        l1c=l1c,
    )


def run_simulation(cfg: SimConfig, out: Path, overwrite: bool) -> dict[str, object]:
    """Simulate with a progress bar on stderr."""
    from kz_pipelines.sim import simulate

    columns = (
        TextColumn("[bold]simulate[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("laying out parcels", total=None)

        def report(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total, description=label)

        return simulate(cfg, out, overwrite=overwrite, progress=report)


_d = SimConfig()


@app.command()
def simulate(
    out: Annotated[
        Path, typer.Option("--out", help="Output folder (must be empty or absent).")
    ] = DEFAULT_REGION,
    seed: Annotated[int, typer.Option(help="Random seed.")] = _d.seed,
    tiles: Annotated[str, typer.Option(help="Comma-separated MGRS tile ids.")] = ",".join(DEFAULT_TILES),
    size_px: Annotated[
        int, typer.Option("--size-px", help="Window side per tile, 10 m pixels.")
    ] = _d.size_px,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD.")] = _d.start.isoformat(),
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD.")] = _d.end.isoformat(),
    parcels: Annotated[int, typer.Option(help="Number of parcels over all tiles.")] = _d.n_parcels,
    l1c: Annotated[bool, typer.Option("--l1c/--no-l1c", help="Also write L1C scenes.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty output folder.")] = False,
) -> None:
    """Simulate a region: parcels, S2 L2A/L1C and S1 scenes as COGs with STAC items, and ground truth."""
    cfg = sim_config(seed, tiles, size_px, start, end, parcels, l1c)
    summary = run_simulation(cfg, out, overwrite)
    typer.echo(json.dumps({"out": str(out), "parcels": summary["parcels"], "items": summary["items"]}))


@app.command()
def demo(
    region: Annotated[Path, typer.Option(help="Where the simulated region lives.")] = DEFAULT_REGION,
    home: Annotated[Path, typer.Option(help="Dagster instance folder for the demo.")] = Path("var/dagster"),
    storage: Annotated[Path, typer.Option(help="Asset storage root.")] = Path("var/storage"),
    report: Annotated[Path, typer.Option(help="The HTML report to write.")] = Path("var/report.html"),
) -> None:
    """Simulate the default region (if absent), materialize every asset for all its partitions and write
    the HTML report (maps, series with events, every model's metrics against the simulated truth)."""
    from kz_pipelines.defs.demo import run_demo

    cfg = SimConfig()
    existing = region / "region.json"
    if not existing.is_file():
        run_simulation(cfg, region, overwrite=False)
    summary = run_demo(region, home, storage, log=err.print, report=report)
    typer.echo(json.dumps(summary))


@tiles_app.command("add")
def tiles_add(
    tiles: Annotated[list[str], typer.Argument(help="MGRS tile ids, e.g. 35VLF 35VMF.")],
) -> None:
    """Register tiles on the Dagster instance of DAGSTER_HOME (every day x tile and season x tile asset gets
    their partitions)."""
    from kz_pipelines.defs.partitions import register_tiles  # the Dagster wiring, only for this command
    from kz_pipelines.tiles import s2_tile

    for tile in tiles:
        try:
            s2_tile(tile)
        except ValueError as exc:
            raise UserFacingError(f"{tile}: not an MGRS tile ({exc})") from None
    typer.echo(f"tiles: {', '.join(register_tiles(tiles))}")


@stac_app.command("serve")
def stac_serve(
    catalog: Annotated[Path, typer.Option(help="A simulated region folder.")] = DEFAULT_REGION,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8081,
    pg_host: Annotated[str, typer.Option(envvar="KZ_PG_HOST")] = "127.0.0.1",
    pg_port: Annotated[int, typer.Option(envvar="KZ_PG_PORT")] = 5432,
    pg_user: Annotated[str, typer.Option(envvar="KZ_PG_USER")] = "postgres",
    pg_password: Annotated[str, typer.Option(envvar="KZ_PG_PASSWORD")] = "",
    pg_db: Annotated[str, typer.Option(envvar="KZ_STAC_DB", help="Database for pgstac.")] = "kz_stac",
) -> None:
    """Serve a region's items as a STAC API (stac-fastapi-pgstac on PostgreSQL)."""
    from kz_pipelines.stac import read_region_catalog
    from kz_pipelines.stac_server import PgConnection, bind_port, load_catalog, prepare_database, serve

    sock = bind_port(host, port)  # a busy port fails here, before the database is touched
    try:
        collections, items = read_region_catalog(catalog)
        conn = PgConnection(host=pg_host, port=pg_port, user=pg_user, password=pg_password, dbname=pg_db)
        prepare_database(conn)
        n = load_catalog(conn, collections, items)
    except BaseException:
        sock.close()
        raise
    err.print(f"loaded {n} items into {pg_db}; serving http://{host}:{port}/")
    serve(conn, sock)


@stac_app.command("search")
def stac_search(
    catalog: Annotated[str, typer.Argument(help="Region folder, stac-geoparquet file or STAC API URL.")],
    collection: Annotated[list[str], typer.Option(help="Collection id (repeatable).")],
    bbox: Annotated[str | None, typer.Option(help="minx,miny,maxx,maxy in WGS84.")] = None,
    datetime_: Annotated[str | None, typer.Option("--datetime", help="Instant or start/end.")] = None,
    max_cloud: Annotated[float | None, typer.Option(help="Keep eo:cloud_cover below this.")] = None,
) -> None:
    """Search a catalog and print matching item ids, one per line."""
    from kz_pipelines.stac import open_search

    try:
        box = [float(v) for v in bbox.split(",")] if bbox else None
    except ValueError:
        raise UserFacingError(f"--bbox: {bbox!r} is not minx,miny,maxx,maxy") from None
    query = {"eo:cloud_cover": {"lt": max_cloud}} if max_cloud is not None else None
    for item in open_search(catalog).search(collection, box, datetime_, query):
        typer.echo(item.id)


@stac_app.command("inspect")
def stac_inspect(
    item: Annotated[Path, typer.Argument(help="A STAC item JSON file.")],
    provider: Annotated[str | None, typer.Option(help="Provider profile (detected when omitted).")] = None,
) -> None:
    """Print the normalized item as JSON: bands (href, scale, offset, nodata, resolution), tile, EPSG,
    orbit, processing baseline. Exits 2 with a message for an item it cannot use."""
    from kz_pipelines.stac import ItemNormalizationError, normalize_item

    try:
        data = json.loads(item.read_text())
    except (OSError, ValueError) as exc:
        raise UserFacingError(f"{item}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("type") != "Feature":
        raise ItemNormalizationError(f'{item}: not a STAC item (no "type": "Feature")')
    typer.echo(json.dumps(normalize_item(data, provider).to_dict(), indent=1))


def _print_bench(result: object, as_json: bool) -> None:
    from kz_pipelines.bench import BenchResult

    assert isinstance(result, BenchResult)
    data = result.to_dict()
    if as_json:
        typer.echo(json.dumps(data))
        return
    from rich.table import Table

    table = Table(title=f"kz bench {result.name} — {result.hardware}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in data["figures"].items():
        table.add_row(key, str(value))
    for key, target in data["targets"].items():
        verdict = "[green]met[/]" if target["met"] else "[red]NOT met[/]"
        measured = "not measured" if target["value"] is None else target["value"]
        table.add_row(f"target {key}", f"{measured} {target['op']} {target['target']}: {verdict}")
    Console().print(table)


@bench_app.command("ingest")
def bench_ingest(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    work: Annotated[Path, typer.Option(help="Keeps the simulated tile between runs.")] = Path("var/bench"),
    size_px: Annotated[int, typer.Option(help="Tile window side; the targets are for 10980.")] = 10980,
) -> None:
    """Load one full simulated tile-date (10980 x 10980, all bands) into s2_scenes vs plain rasterio."""
    from kz_pipelines.bench.ingest import run

    _print_bench(run(work, size_px, log=lambda m: err.print(m, highlight=False)), json_)


@bench_app.command("cloudmask")
def bench_cloudmask(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    work: Annotated[Path, typer.Option(help="Keeps the simulated tile between runs.")] = Path("var/bench"),
    size_px: Annotated[int, typer.Option(help="Tile window side; the targets are for 10980.")] = 10980,
    device: Annotated[str, typer.Option(help="auto, cuda or cpu.")] = "auto",
) -> None:
    """Mask one full simulated tile-date: read, mask, write (seconds, Mpx/s, batch, GFLOP per sub-tile)."""
    from kz_pipelines.bench.cloudmask import run

    _print_bench(run(work, size_px, device, log=lambda m: err.print(m, highlight=False)), json_)


@bench_app.command("zonal")
def bench_zonal(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    work: Annotated[Path, typer.Option(help="Keeps the synthetic raster between runs.")] = Path("var/bench"),
    size_px: Annotated[int, typer.Option(help="Tile window side; the targets are for 10980.")] = 10980,
    parcels: Annotated[int, typer.Option(help="Parcels of 1-20 ha; the targets are for 20000.")] = 20_000,
    band_dates: Annotated[int, typer.Option(help="Band-dates (at least 4 for the targets).")] = 4,
) -> None:
    """Parcel statistics on a full tile: ours vs exactextract and rasterstats (throughput, exactness)."""
    from kz_pipelines.bench.zonal import run

    log = lambda m: err.print(m, highlight=False)  # noqa: E731
    _print_bench(run(work, size_px, parcels, band_dates, log=log), json_)


@bench_app.command("croptype")
def bench_croptype(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    parcels: Annotated[int, typer.Option(help="Parcels; the targets are for 200000.")] = 200_000,
    dates: Annotated[int, typer.Option(help="Dates of the synthetic season.")] = 40,
    features: Annotated[int, typer.Option(help="Features per date.")] = 30,
) -> None:
    """Crop type at national scale: LightGBM (and network) training time, scoring parcels per second."""
    from kz_pipelines.bench.croptype import run

    _print_bench(run(parcels, dates, features, log=lambda m: err.print(m, highlight=False)), json_)


@eval_app.command("cloudmask")
def eval_cloudmask(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    work: Annotated[Path, typer.Option(help="Keeps regions, chips and models between runs.")] = Path(
        "var/eval"
    ),
    quick: Annotated[bool, typer.Option(help="A tiny smoke run (targets not expected to be met).")] = False,
) -> None:
    """Cloud mask vs SCL, s2cloudless and ukis-csmask on held-out simulated scenes and the real patch."""
    from kz_pipelines.cloudmask.evaluate import run

    _print_bench(run(work, log=lambda m: err.print(m, highlight=False), quick=quick), json_)


@eval_app.command("croptype")
def eval_croptype(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    quick: Annotated[bool, typer.Option(help="Fewer trees and epochs (a smoke run).")] = False,
    folds: Annotated[int, typer.Option(help="Cross-validation folds.")] = 5,
    work: Annotated[
        Path, typer.Option(help="Simulated regions and pipeline runs of the held-out evaluation.")
    ] = Path("var/eval-croptype"),
    sim: Annotated[bool, typer.Option(help="Run the simulated held-out seed evaluation.")] = True,
    reuse: Annotated[
        bool, typer.Option(help="Keep complete pipeline runs of an earlier call in --work.")
    ] = False,
) -> None:
    """Crop type vs a random forest and plain LightGBM on real French LPIS parcels (k-fold CV), and the
    pipeline's model on a held-out simulated seed."""
    from kz_pipelines.models.crop_eval import run

    log = lambda m: err.print(m, highlight=False)  # noqa: E731
    _print_bench(run(log=log, quick=quick, folds=folds, work=work if sim else None, reuse=reuse), json_)


@eval_app.command("events")
def eval_events(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    quick: Annotated[bool, typer.Option(help="A small simulated region (a smoke run).")] = False,
    work: Annotated[
        Path, typer.Option(help="Simulated regions and pipeline runs (shared with kz eval croptype).")
    ] = Path("var/eval-croptype"),
    reuse: Annotated[bool, typer.Option(help="Keep complete pipeline runs of an earlier --work.")] = False,
) -> None:
    """Mowing, harvest/ploughing, emergence, damage and tillage: baseline and learned model on a held-out
    simulated seed, with all and with half of the Sentinel-2 dates."""
    from kz_pipelines.models.events_eval import run

    _print_bench(run(work, log=lambda m: err.print(m, highlight=False), quick=quick, reuse=reuse), json_)


@bench_app.command("orchestration")
def bench_orchestration(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    work: Annotated[Path, typer.Option(help="Scratch folder (emptied first).")] = Path(
        "var/bench-orchestration"
    ),
    tiles: Annotated[int, typer.Option(help="Tiles (1-6); the issue's figure is for 6.")] = 6,
    days: Annotated[int, typer.Option(help="Days from April 1st; the issue's figure is for 214.")] = 214,
    size_px: Annotated[int, typer.Option("--size-px", help="The stand-in tile window (120 or more).")] = 120,
    minutes: Annotated[
        float,
        typer.Option(help="Cancel the backfill after this long (0: to the end); the rate gives the rest."),
    ] = 0,
    cpu_nodes: Annotated[int, typer.Option(help="Projection: CPU nodes of the cluster.")] = 10,
    cores: Annotated[int, typer.Option(help="Projection: cores per CPU node.")] = 16,
    gpus: Annotated[int, typer.Option(help="Projection: GPUs of the cluster.")] = 2,
    pg_host: Annotated[str, typer.Option(envvar="KZ_PG_HOST")] = "127.0.0.1",
    pg_port: Annotated[str, typer.Option(envvar="KZ_PG_PORT")] = "5432",
    pg_user: Annotated[str, typer.Option(envvar="KZ_PG_USER")] = "postgres",
    pg_password: Annotated[str, typer.Option(envvar="KZ_PG_PASSWORD")] = "",
    pg_db: Annotated[str, typer.Option(help="The instance's database (dropped and created).")] = (
        "kz_bench_orchestration"
    ),
) -> None:
    """Backfill a season of the scene-level assets through the real daemon and webserver on PostgreSQL
    (stand-in compute), then project a national and a 100-tile backfill onto a Kubernetes cluster."""
    import shutil

    from kz_pipelines.defs.orchestration import TILES, Cluster, run

    if not 1 <= tiles <= len(TILES):
        raise UserFacingError(f"--tiles must be 1 to {len(TILES)}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    postgres = {"host": pg_host, "port": pg_port, "user": pg_user, "password": pg_password}
    result = run(
        work,
        postgres,
        tiles=tiles,
        n_days=days,
        size_px=size_px,
        max_minutes=minutes,
        db=pg_db,
        cluster=Cluster(cpu_nodes=cpu_nodes, cores=cores, gpus=gpus),
        log=lambda m: err.print(m, highlight=False),
    )
    _print_bench(result, json_)


@eval_app.command("faults")
def eval_faults(
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object as the last line.")] = False,
    work: Annotated[Path, typer.Option(help="Scratch folder (region, storage, instance).")] = Path(
        "var/eval-faults"
    ),
    postgres: Annotated[
        bool, typer.Option(help="Also restart the machine's PostgreSQL during runs (root, pg_ctlcluster).")
    ] = True,
) -> None:
    """Inject faults (flaky STAC API, corrupt and missing data, foreign hrefs, SIGKILL mid-write, CUDA OOM,
    bad parcels, a PostgreSQL restart) and report what survived and what was lost."""
    from kz_pipelines.defs.faults import run

    _print_bench(run(work, log=lambda m: err.print(m, highlight=False), postgres=postgres), json_)


def main() -> None:
    """Entry point: run the app, turning user-fixable errors into one line and exit code 2."""
    try:
        app(standalone_mode=False)
    except UserFacingError as exc:
        err.print(f"[bold red]kz: error:[/] {exc}", highlight=False, soft_wrap=True)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        raise


if __name__ == "__main__":
    main()
