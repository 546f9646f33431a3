"""The deployment files under infra/: container image, lock files, compose stack, Helm values.

Everything here runs offline and without a Docker engine, a cluster or helm: the Dockerfile is parsed
(dockerfile-parse), the compose files are validated against the Compose Specification's JSON schema (as
check-jsonschema ships it), and the Helm values are rendered the way the Dagster chart renders them into
dagster.yaml and checked against the config schemas of dagster, dagster-postgres and dagster-k8s, and their
Kubernetes objects against the `kubernetes` client's models. The chart's own values.schema.json is in no
package this project can install, so it is not used (infra/README.md says so).
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
REQUIREMENTS = INFRA / "requirements"
COMPOSE_FILES = (INFRA / "compose.yaml", INFRA / "compose.gpu.yaml")
# a setting that holds a secret (names of Secrets, such as `postgresqlSecretName`, are references)
SECRET_NAME = re.compile(r"password|passwd|token|secret_?key|_key$|apikey|credential", re.IGNORECASE)
CUDA_PACKAGE = re.compile(r"^(nvidia-|cuda-|triton$)")


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def snake(key: str) -> str:
    """The chart's camelCase value name as dagster's config key (``runK8sConfig`` -> ``run_k8s_config``)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


# ------------------------------------------------------------------------------------------- Dockerfile


@dataclass
class Stage:
    name: str
    instructions: list[tuple[str, str]]
    """(instruction, value) in order, the FROM excluded."""

    def values(self, instruction: str) -> list[str]:
        return [value for kind, value in self.instructions if kind == instruction]


def dockerfile_stages() -> dict[str, Stage]:
    from dockerfile_parse import DockerfileParser

    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for item in DockerfileParser(str(DOCKERFILE)).structure:
        if item["instruction"] == "FROM":
            match = re.search(r"\s+AS\s+(\S+)\s*$", item["value"], re.IGNORECASE)
            assert match, f"every stage is named: FROM {item['value']}"
            current = stages[match.group(1)] = Stage(match.group(1), [])
        elif current is not None and item["instruction"] != "COMMENT":
            current.instructions.append((item["instruction"], item["value"]))
    return stages


def exec_form(value: str) -> list[str]:
    words = json.loads(value)
    assert isinstance(words, list)
    return [str(w) for w in words]


@pytest.mark.parametrize(("target", "lock"), [("cpu", "cpu.txt"), ("cuda", "cuda.txt")])
def test_dockerfile_target_serves_the_code_location_as_a_non_root_user(target: str, lock: str) -> None:
    stages = dockerfile_stages()
    assert target in stages, f"no `--target {target}` stage in {DOCKERFILE}"
    stage = stages[target]

    users = stage.values("USER")
    assert users, f"{target}: no USER (the image would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{target}: runs as {users[-1]}"
    assert user.isdigit(), f"{target}: USER {users[-1]} is not numeric (Kubernetes runAsNonRoot needs a uid)"

    cmd = exec_form(stage.values("CMD")[-1])
    assert cmd[:3] == ["dagster", "code-server", "start"], cmd
    assert cmd[cmd.index("-m") + 1] == "kz_pipelines.definitions"
    port = cmd[cmd.index("-p") + 1]
    assert port in stage.values("EXPOSE")
    health = exec_form(stage.values("HEALTHCHECK")[-1].split(" CMD ", 1)[1])
    assert health == ["dagster", "api", "grpc-health-check", "-p", port]

    # its build stage installs the lock with every file checked against the hashes
    build = stages[f"{target}-build"]
    assert any(f"--require-hashes -r /tmp/requirements/{lock}" in run for run in build.values("RUN"))
    assert any(f"infra/requirements/{lock}" in copy for copy in build.values("COPY"))
    assert stage.values("COPY").count("dagster.yaml /opt/dagster/dagster_home/dagster.yaml") == 1


def test_dockerfile_base_images_are_pinned() -> None:
    from dockerfile_parse import DockerfileParser

    images = DockerfileParser(str(DOCKERFILE), env_replace=True).parent_images
    assert images
    for image in images:
        name, _, digest = image.partition("@")
        tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else ""
        assert tag or digest.startswith("sha256:"), f"FROM {image}: no tag or digest"
        assert tag != "latest", f"FROM {image}: pin a version, not latest"


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out, by Docker's rules as far as these patterns need: the
    last matching pattern wins, a pattern matches the path or a folder above it, `!` lets it back in."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!").replace("**/", "*")
        if any(fnmatch(prefix, glob) for prefix in prefixes):
            verdict = not negated
    return verdict


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    patterns = dockerignore_patterns()
    left_out = (".git", ".venv", "var", "kz_pipelines/__pycache__", ".pytest_cache", "test-artifacts", ".env")
    for path in (*left_out, "infra/.env", "var/test-artifacts/ui"):
        assert ignored(path, patterns), f".dockerignore lets {path} into the build context"
    sources = {
        word
        for stage in dockerfile_stages().values()
        for copy in stage.values("COPY")
        if not copy.startswith("--from")
        for word in copy.split()[:-1]
    }
    assert "infra/requirements/cuda.txt" in sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


# ----------------------------------------------------------------------------------------------- locks


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: int


def read_lock(name: str) -> tuple[dict[str, Pin], list[str]]:
    """The pins of a lock file (canonical name -> pin) and its option lines (``--index-url ...``)."""
    text = (REQUIREMENTS / name).read_text().replace("\\\n", " ")
    pins: dict[str, Pin] = {}
    options: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("--"):
            options.append(line)
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)", line)
        assert match, f"{name}: not an exact pin: {line[:120]}"
        pins[canonicalize_name(match.group(1))] = Pin(match.group(2), match.group(3).count("--hash="))
    return pins, options


def test_locks_pin_every_requirement_and_hash_every_file() -> None:
    for name in ("cpu.txt", "cuda.txt"):
        pins, options = read_lock(name)
        assert options == ["--index-url https://pypi.org/simple"], name
        unhashed = sorted(n for n, pin in pins.items() if pin.hashes == 0)
        assert not unhashed, f"{name}: no hashes for {unhashed}"
    torch_cpu, options = read_lock("torch-cpu.txt")
    assert options == ["--index-url https://download.pytorch.org/whl/cpu"]
    assert set(torch_cpu) == {"torch", "torchvision"}
    assert all(pin.version.endswith("+cpu") for pin in torch_cpu.values())


def test_cpu_and_cuda_locks_differ_only_in_torch_and_cuda() -> None:
    cpu, _ = read_lock("cpu.txt")
    cuda, _ = read_lock("cuda.txt")
    torch_cpu, _ = read_lock("torch-cpu.txt")
    assert not [n for n in cpu if CUDA_PACKAGE.match(n) or n in torch_cpu], "cpu.txt pulls CUDA builds"
    assert [n for n in cuda if CUDA_PACKAGE.match(n)], "cuda.txt has no CUDA libraries"
    for name, pin in torch_cpu.items():
        assert Version(cuda[name].version).local is None, f"cuda.txt: {name} must be PyPI's default build"
        assert Version(pin.version).public == cuda[name].version, f"{name}: cpu and cuda images differ"
    shared = {n: p.version for n, p in cuda.items() if not CUDA_PACKAGE.match(n) and n not in torch_cpu}
    assert shared == {n: p.version for n, p in cpu.items()}


@pytest.mark.parametrize("lock", ["cpu.txt", "cuda.txt"])
def test_lock_satisfies_the_project_and_the_deployment(lock: str) -> None:
    pins = {n: Version(p.version) for n, p in read_lock(lock)[0].items()}
    if lock == "cpu.txt":
        pins |= {n: Version(p.version) for n, p in read_lock("torch-cpu.txt")[0].items()}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for spec in map(Requirement, project):
        pin = pins.get(canonicalize_name(spec.name))
        assert pin, f"{lock}: {spec.name} missing: run infra/requirements/compile.sh"
        assert spec.specifier.contains(pin, prereleases=True), f"{lock}: {spec.name}=={pin} !~ {spec}"
    assert pins["dagster-k8s"] == Version("0.29.27")
    assert "distributed" in pins, f"{lock}: no Dask distributed"
    assert pins["distributed"] == pins["dask"], "distributed and dask are released together"
    # dagster's libraries (0.x) are released with its core (1.y): 0.(y+16).z goes with 1.y.z
    core = pins["dagster"]
    for name, version in pins.items():
        if name.startswith("dagster"):
            minor = core.minor + (16 if version.major == 0 else 0)
            assert (version.minor, version.micro) == (minor, core.micro), f"{lock}: {name}=={version}"


# --------------------------------------------------------------------------------------------- compose


def compose() -> dict[str, Any]:
    loaded = load_yaml(INFRA / "compose.yaml")
    assert isinstance(loaded, dict)
    return loaded


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in (INFRA / ".env.example").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {key: value for key, value in pairs}


def test_compose_files_follow_the_compose_specification() -> None:
    pytest.importorskip(
        "check_jsonschema",
        reason="the Compose Specification schema comes from check-jsonschema (a dev dependency)",
    )
    from jsonschema import Draft202012Validator

    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = Draft202012Validator(schema)
    for path in COMPOSE_FILES:
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(load_yaml(path))]
        assert not errors, f"{path.name}: {errors}"


def test_compose_services_are_healthchecked_and_start_in_order() -> None:
    services = compose()["services"]
    one_shot = {name for name, s in services.items() if s.get("restart") == "no"}
    assert one_shot == {"init"}
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for dependency, how in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in one_shot else "service_healthy"
            assert how == {"condition": expected}, f"{name} -> {dependency}: {how}"
    assert set(services) == {"postgres", "init", "stac", "code-location", "webserver", "daemon"}


def test_compose_volumes_and_workspace_fit_together() -> None:
    doc = compose()
    services = doc["services"]
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).is_file(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in doc["volumes"], f"{name}: volume {source} is not declared"

    workspace = load_yaml(INFRA / "workspace.grpc.yaml")["load_from"][0]["grpc_server"]
    local = load_yaml(ROOT / "workspace.yaml")["load_from"][0]["python_module"]
    assert workspace["location_name"] == local["location_name"]
    server = services[workspace["host"]]["command"]
    assert server[:3] == ["dagster", "code-server", "start"]
    assert server[server.index("-p") + 1] == str(workspace["port"])
    assert server[server.index("-m") + 1] == local["module_name"]
    assert importlib.util.find_spec(local["module_name"]) is not None
    for name in ("webserver", "daemon"):
        command = services[name]["command"]
        mounted = {v.split(":")[1] for v in services[name]["volumes"] if v.startswith("./workspace.")}
        assert {command[command.index("-w") + 1]} == mounted, f"{name}: -w is not the mounted workspace"

    # the region the init service simulates is the one the STAC API serves and the settings point at
    init = " ".join(services["init"]["command"])
    region = re.search(r"kz simulate --out (\S+?);", init)
    assert region, init
    stac = services["stac"]["command"]
    assert stac[stac.index("--catalog") + 1] == region.group(1)
    settings = env_example()
    for key in ("KZ_PARCELS", "KZ_LABELS", "KZ_FIELD_LABELS"):
        assert settings[key].startswith(region.group(1) + "/"), key
    mounts = {v.split(":")[1] for v in services["code-location"]["volumes"]}
    assert settings["KZ_STORAGE"] in mounts, "KZ_STORAGE is not a volume of code-location"


def test_env_example_sets_what_the_app_and_dagster_yaml_read() -> None:
    settings = env_example()
    needed = {"KZ_STAC", "KZ_STORAGE", "KZ_PARCELS", "KZ_LABELS", "KZ_FIELD_LABELS", "KZ_STAC_DB"}
    instance = (ROOT / "dagster.yaml").read_text()
    needed |= set(re.findall(r"env:\s*(\w+)", instance))
    assert needed <= set(settings), f"missing in .env.example: {sorted(needed - set(settings))}"
    assert settings["KZ_PG_HOST"] in compose()["services"]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted key path, value) of a YAML document; list items are named by index."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


def test_no_secret_values_inline() -> None:
    for path in COMPOSE_FILES:
        for where, value in walk(load_yaml(path)):
            if SECRET_NAME.search(where.rsplit(".", 1)[-1]):
                assert re.fullmatch(r"\$\{\w+(:?[?-][^}]*)?\}", str(value)), f"{path.name}: {where} is inline"
    for key, value in env_example().items():
        if SECRET_NAME.search(key):
            assert value in ("", "change-me"), f".env.example: {key} holds a value, not a placeholder"
    values = helm_values()
    for where, value in walk(values):
        if SECRET_NAME.search(where.rsplit(".", 1)[-1]):
            assert not isinstance(value, str) or not value, f"values.yaml: {where} holds a secret"
    for deployment in values["dagster-user-deployments"]["deployments"]:
        assert not [k for k in deployment["env"] if SECRET_NAME.search(k)], "secrets belong in envSecrets"


# ------------------------------------------------------------------------------------------------ helm


def helm_values() -> dict[str, Any]:
    loaded = load_yaml(INFRA / "helm" / "values.yaml")
    assert isinstance(loaded, dict)
    return loaded


def assert_valid(schema: Any, value: Any, what: str) -> None:
    from dagster._config import validate_config

    result = validate_config(schema, value)
    assert result.success, f"{what}: {[error.message for error in result.errors or []]}"


def assert_k8s_object(model: str, value: Any) -> None:
    """``value`` is a valid Kubernetes ``model`` as far as field names go, at every depth."""
    import kubernetes.client
    from dagster_k8s.models import k8s_snake_case_dict

    k8s_snake_case_dict(getattr(kubernetes.client, model), value)


def chart_run_launcher(values: Mapping[str, Any]) -> dict[str, Any]:
    """The K8sRunLauncher config the chart writes into dagster.yaml (its _run-launcher.tpl): the values in
    snake_case, ConfigMap and Secret references as names, and what the chart fills in from the release."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    config: dict[str, Any] = {
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "service_account_name": "dagster",
        "job_namespace": launcher.get("jobNamespace") or "kz",
    }
    for key, value in launcher.items():
        if key == "jobNamespace" or value in (None, [], {}):
            continue
        if key in ("envConfigMaps", "envSecrets"):
            config[snake(key)] = [ref["name"] for ref in value]
        elif key == "runK8sConfig":
            config["run_k8s_config"] = {snake(k): v for k, v in value.items()}
        else:
            config[snake(key)] = value
    return config


def chart_instance(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of the chart's dagster.yaml (configmap-instance.yaml) these values decide."""
    pg = values["postgresql"]
    daemon = values["dagsterDaemon"]
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    return {
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": pg["postgresqlUsername"],
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": pg["postgresqlHost"],
                    "db_name": pg["postgresqlDatabase"],
                    "port": pg["service"]["port"],
                    "params": pg["postgresqlParams"],
                }
            }
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": chart_run_launcher(values),
        },
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": daemon["runCoordinator"]["type"],
            "config": {snake(key): value for key, value in queue.items()},
        },
        "run_monitoring": {snake(key): value for key, value in daemon["runMonitoring"].items()},
        "telemetry": values["telemetry"],
    }


def test_helm_values_render_a_valid_dagster_instance(tmp_path: Path) -> None:
    from dagster import QueuedRunCoordinator
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher

    values = helm_values()
    instance = chart_instance(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(instance))
    dagster_instance_config(str(tmp_path))  # dagster's own loader: the instance schema and its rules
    launcher = instance["run_launcher"]["config"]
    assert_valid(K8sRunLauncher.config_type(), launcher, "runLauncher")
    assert_valid(QueuedRunCoordinator.config_type(), instance["run_coordinator"]["config"], "runCoordinator")
    assert_k8s_object("V1ResourceRequirements", launcher["resources"])

    # the same run queue and run monitoring as the repository's dagster.yaml
    local = load_yaml(ROOT / "dagster.yaml")
    assert instance["run_coordinator"]["config"] == local["concurrency"]["runs"]
    assert instance["run_monitoring"] == local["run_monitoring"]
    assert instance["telemetry"] == local["telemetry"]


def test_helm_values_use_an_external_postgresql_through_a_secret() -> None:
    values = helm_values()
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]


def test_helm_user_deployment_runs_the_k8s_code_location_on_shared_storage() -> None:
    values = helm_values()
    user = values["dagster-user-deployments"]
    assert user["enabled"] is True
    [deployment] = user["deployments"]
    assert deployment["name"] == "kz-pipelines"
    args = deployment["dagsterApiGrpcArgs"]
    assert args == ["-m", "kz_pipelines.definitions_k8s"]
    assert importlib.util.find_spec(args[1]) is not None, f"{args[1]} does not exist"
    assert deployment["image"]["tag"] not in ("", "latest")
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert {"KZ_STAC", "KZ_STORAGE", "KZ_PARCELS"} <= set(deployment["env"])
    assert all(isinstance(v, str) for v in deployment["env"].values()), "env values are strings"
    assert [s["name"] for s in deployment["envSecrets"]]

    for volume in deployment["volumes"]:
        assert_k8s_object("V1Volume", volume)
    for mount in deployment["volumeMounts"]:
        assert_k8s_object("V1VolumeMount", mount)
    assert_k8s_object("V1PodSecurityContext", deployment["podSecurityContext"])
    assert_k8s_object("V1SecurityContext", deployment["securityContext"])
    assert_k8s_object("V1ResourceRequirements", deployment["resources"])
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True

    # KZ_STORAGE lies on a ReadWriteMany claim that every step pod mounts
    storage = deployment["env"]["KZ_STORAGE"]
    [mount] = [m for m in deployment["volumeMounts"] if storage.startswith(m["mountPath"].rstrip("/") + "/")]
    [volume] = [v for v in deployment["volumes"] if v["name"] == mount["name"]]
    claim = load_yaml(INFRA / "helm" / "kz-data-pvc.yaml")
    assert_k8s_object("V1PersistentVolumeClaim", claim)
    assert claim["metadata"]["name"] == volume["persistentVolumeClaim"]["claimName"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_helm_webserver_and_daemon_run_the_locked_dagster() -> None:
    values = helm_values()
    dagster = read_lock("cuda.txt")[0]["dagster"].version
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert values[component]["image"]["tag"] == dagster, f"{component} runs another dagster than the code"
    assert values["dagsterWebserver"]["service"]["type"] == "ClusterIP", "the webserver has no authentication"
