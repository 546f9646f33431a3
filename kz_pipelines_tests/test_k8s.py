"""The Kubernetes Jobs that dagster-k8s would submit for the steps of a daily run, built by dagster-k8s's own
step handler (`K8sStepHandler.launch_step`) from the project's executor, op tags and Helm values, with the
Kubernetes API replaced by a recorder: the cloud-mask step asks for a GPU on a GPU node, every other step
runs on CPU nodes, and secrets only ever arrive as references."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import create_execution_plan
from dagster._core.execution.context.system import PlanData, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import create_context_free_log_manager
from dagster._core.execution.retries import RetryMode
from dagster._core.executor.init import InitExecutorContext
from dagster._core.executor.step_delegating.step_handler.base import StepHandlerContext
from dagster._core.instance import DagsterInstance
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._core.test_utils import create_run_for_test, environ, instance_for_test
from dagster._grpc.types import ExecuteStepArgs
from dagster_k8s.client import DagsterKubernetesClient
from kubernetes.client import V1Job

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "infra" / "helm" / "values.yaml"
IMAGE = "registry.example.org/kz-pipelines:test"
GPU = "nvidia.com/gpu"
CREDENTIAL_WORDS = ("PASSWORD", "SECRET", "ACCESS_KEY", "SUBSCRIPTION_KEY", "TOKEN")

KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: test
contexts:
  - name: test
    context: {cluster: test}
clusters:
  - name: test
    cluster: {server: "https://127.0.0.1:6443"}
"""
"""A kubeconfig pointing nowhere reachable: nothing in this test talks to a cluster."""


def _values() -> dict[str, Any]:
    with VALUES.open() as f:
        return yaml.safe_load(f)


def _deployment() -> dict[str, Any]:
    (deployment,) = _values()["dagster-user-deployments"]["deployments"]
    return deployment


def _container_context(deployment: dict[str, Any]) -> dict[str, Any]:
    """What the chart's user deployment hands to the runs it launches (``includeConfigInLaunchedRuns``):
    its secrets by name, its plain settings, its volumes."""
    assert deployment.get("includeConfigInLaunchedRuns", {"enabled": True})["enabled"]
    return {
        "k8s": {
            "env_secrets": [s["name"] for s in deployment.get("envSecrets", [])],
            "env_vars": [f"{k}={v}" for k, v in _env(deployment).items()],
            "volumes": deployment.get("volumes", []),
            "volume_mounts": deployment.get("volumeMounts", []),
        }
    }


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterInstance]:
    """An instance whose run launcher is the chart's K8sRunLauncher."""
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(KUBECONFIG)
    launcher = _values()["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    chart = launcher["config"]["k8sRunLauncher"]
    config = {
        "service_account_name": "dagster",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "dagster_home": "/opt/dagster/dagster_home",
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "env_secrets": [s["name"] for s in chart.get("envSecrets", [])],
    }
    with instance_for_test(
        overrides={"run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}}
    ) as inst:
        yield inst


@pytest.fixture(scope="module")
def jobs(instance: DagsterInstance) -> dict[str, V1Job]:
    """The Kubernetes Job of every step of a daily run, as dagster-k8s builds and submits them (with the
    settings the pods get, which the resources' EnvVars read)."""
    with environ(_env(_deployment())):
        return _step_jobs(instance)


def _step_jobs(instance: DagsterInstance) -> dict[str, V1Job]:
    deployment = _deployment()
    module = deployment["dagsterApiGrpcArgs"][deployment["dagsterApiGrpcArgs"].index("-m") + 1]
    repo = ReconstructableRepository.for_module(
        module, "defs", str(ROOT), container_image=IMAGE, container_context=_container_context(deployment)
    )
    recon: ReconstructableJob = repo.get_reconstructable_job("daily")
    job_def = recon.get_definition()
    executor_def = job_def.executor_def
    config = ResolvedRunConfig.build(job_def, {}).execution.execution_engine_config
    executor = executor_def.executor_creation_fn(  # type: ignore[misc]
        InitExecutorContext(job=recon, executor_def=executor_def, executor_config=config, instance=instance)
    )
    handler = executor._step_handler  # noqa: SLF001 (dagster-k8s's own handler, API swapped for a recorder)
    batch = mock.MagicMock()
    handler._api_client = DagsterKubernetesClient.production_client(batch_api_override=batch)  # noqa: SLF001
    run = create_run_for_test(instance, job_name="daily", job_code_origin=recon.get_python_origin())
    plan = create_execution_plan(recon)
    plan_context = PlanOrchestrationContext(
        plan_data=PlanData(
            job=recon,
            dagster_run=run,
            instance=instance,
            execution_plan=plan,
            raise_on_error=True,
            retry_mode=RetryMode.DISABLED,
        ),
        log_manager=create_context_free_log_manager(instance, run),
        executor=executor,
        output_capture=None,
    )
    out: dict[str, V1Job] = {}
    for step in plan.steps:
        args = ExecuteStepArgs(recon.get_python_origin(), run.run_id, [step.key])
        list(handler.launch_step(StepHandlerContext(instance, plan_context, plan.steps, args, run)))
        name, _, kwargs = batch.method_calls[-1]
        assert name == "create_namespaced_job"
        out[step.key] = kwargs["body"]
    return out


def test_every_step_of_the_daily_run_is_a_job(jobs: dict[str, V1Job]) -> None:
    assert set(jobs) == {
        "s2_items",
        "s1_items",
        "s2_scenes",
        "s1_scenes",
        "s2_cloud_mask",
        "parcel_observations",
    }
    for step, job in jobs.items():
        (container,) = job.spec.template.spec.containers
        assert container.image == IMAGE, step
        assert container.args[:3] == ["dagster", "api", "execute_step"], step
        assert job.metadata.labels["dagster/op"] == step


def test_cloud_mask_step_asks_for_a_gpu_on_a_gpu_node(jobs: dict[str, V1Job]) -> None:
    pod = jobs["s2_cloud_mask"].spec.template.spec
    (container,) = pod.containers
    assert container.resources.limits[GPU] == "1"
    assert container.resources.requests[GPU] == "1"
    # the step's memory and CPU from the executor's defaults stay (the tags merge onto them)
    assert container.resources.requests["memory"] == "8Gi"
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [(GPU, "Exists", "NoSchedule")]


def test_cpu_steps_never_ask_for_a_gpu(jobs: dict[str, V1Job]) -> None:
    for step, job in jobs.items():
        if step == "s2_cloud_mask":
            continue
        pod = job.spec.template.spec
        (container,) = pod.containers
        assert GPU not in (container.resources.limits or {}), step
        assert GPU not in (container.resources.requests or {}), step
        assert not pod.tolerations, step  # GPU nodes are tainted: a pod without the toleration stays off them
        assert not (pod.node_selector or {}).get("nvidia.com/gpu.present"), step
        assert container.resources.requests == {"cpu": "2", "memory": "8Gi"}, step
        assert container.resources.limits == {"cpu": "4", "memory": "16Gi"}, step


def test_secrets_arrive_as_references_and_the_storage_volume_is_mounted(jobs: dict[str, V1Job]) -> None:
    deployment = _deployment()
    secrets = {s["name"] for s in deployment["envSecrets"]}
    assert secrets
    storage = Path(_env(deployment)["KZ_STORAGE"])
    mount = next(m for m in deployment["volumeMounts"] if storage.is_relative_to(m["mountPath"]))
    for step, job in jobs.items():
        (container,) = job.spec.template.spec.containers
        assert {e.secret_ref.name for e in container.env_from if e.secret_ref} >= secrets, step
        credentials = [e for e in container.env if any(w in e.name for w in CREDENTIAL_WORDS)]
        assert credentials, step  # the instance's database password at least
        for env in credentials:  # each one a reference to a Secret, never a literal value
            assert env.value is None, (step, env.name)
            assert env.value_from.secret_key_ref is not None, (step, env.name)
        assert mount["name"] in {m.name for m in container.volume_mounts}, step
        assert mount["name"] in {v.name for v in job.spec.template.spec.volumes}, step


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    """The deployment's plain settings (the chart takes a mapping or a list of name/value pairs)."""
    env = deployment.get("env", {})
    return dict(env) if isinstance(env, dict) else {e["name"]: e["value"] for e in env}
