"""The science core never imports dagster; only kz_pipelines.defs and kz_pipelines.definitions do. The code
locations load without the model libraries that only some steps use."""

import pkgutil
import subprocess
import sys

import kz_pipelines

WIRING = ("kz_pipelines.defs", "kz_pipelines.definitions", "kz_pipelines.cli")


def _core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(kz_pipelines.__path__, "kz_pipelines.")]
    return sorted(n for n in names if not n.startswith(WIRING))


def _imported(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    """Which ``watched`` top-level packages a fresh interpreter holds after importing ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({watched!r}))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_core_modules_do_not_import_dagster() -> None:
    modules = _core_modules()
    assert "kz_pipelines.sim.region" in modules
    assert "kz_pipelines.stac" in modules
    assert _imported(modules, ("dagster",)) == [], "dagster imported by the core"


def test_the_check_fails_when_dagster_is_imported() -> None:
    assert _imported(["kz_pipelines.definitions"], ("dagster",)) == ["dagster"]


HEAVY = ("torch", "lightgbm", "sklearn", "segmentation_models_pytorch")
"""Libraries only some steps use: the code location must not load them (every run and every Kubernetes step
pod loads it before its work)."""


def test_code_locations_load_without_the_heavy_model_libraries() -> None:
    for location in ("kz_pipelines.definitions", "kz_pipelines.definitions_k8s"):
        assert _imported([location], HEAVY) == [], location


def test_the_heavy_library_check_sees_an_import() -> None:
    # the steps that mask or train still import them where they run
    assert _imported(["kz_pipelines.cloudmask.predict"], HEAVY) == ["torch"]
    assert "lightgbm" in _imported(["kz_pipelines.models.crop_type"], HEAVY)
