"""The science core never imports dagster; only kz_pipelines.defs and kz_pipelines.definitions do."""

import pkgutil
import subprocess
import sys

import kz_pipelines

WIRING = ("kz_pipelines.defs", "kz_pipelines.definitions", "kz_pipelines.cli")


def _core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(kz_pipelines.__path__, "kz_pipelines.")]
    return sorted(n for n in names if not n.startswith(WIRING))


def test_core_modules_do_not_import_dagster() -> None:
    modules = _core_modules()
    assert "kz_pipelines.sim.region" in modules
    assert "kz_pipelines.stac" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"dagster imported by the core: {out.stdout.strip()[:200]}"


def test_the_check_fails_when_dagster_is_imported() -> None:
    code = (
        "import importlib, sys\n"
        "importlib.import_module('kz_pipelines.definitions')\n"
        "print('dagster' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


HEAVY = ("torch", "lightgbm", "sklearn", "segmentation_models_pytorch")
"""Libraries only some steps use: the code location must not load them (every run and every Kubernetes step
pod loads it before its work)."""


def _loaded_by(module: str) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(','.join(sorted(h for h in {HEAVY!r} if h in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_code_locations_load_without_the_heavy_model_libraries() -> None:
    for location in ("kz_pipelines.definitions", "kz_pipelines.definitions_k8s"):
        assert _loaded_by(location) == [], location


def test_the_heavy_library_check_sees_an_import() -> None:
    # the steps that mask or train still import them where they run
    assert _loaded_by("kz_pipelines.cloudmask.predict") == ["torch"]
    assert "lightgbm" in _loaded_by("kz_pipelines.models.crop_type")
