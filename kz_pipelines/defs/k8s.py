"""Kubernetes: every step of a run in its own pod (dagster-k8s `k8s_job_executor`).

The run pod (K8sRunLauncher, configured by the Helm chart's values in ``infra/helm/values.yaml``) starts one
Kubernetes Job per step. Each step pod gets the image, the environment from secrets, and the volumes of the
code location's deployment (the chart passes them on to launched runs), plus:

* every step: :data:`STEP_K8S_CONFIG`, the CPU and memory of a step over a full 10980 px tile;
* ``s2_cloud_mask`` in addition: its op tags (`kz_pipelines.defs.cloudmask.GPU_TAGS`): one
  ``nvidia.com/gpu``, a GPU node selector and the toleration of the GPU nodes' taint. GPU nodes must carry
  that taint (``nvidia.com/gpu:NoSchedule``), so that no CPU step lands on them.
"""

from typing import Any

from dagster_k8s import k8s_job_executor

STEP_K8S_CONFIG: dict[str, Any] = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "2", "memory": "8Gi"},
            "limits": {"cpu": "4", "memory": "16Gi"},
        }
    }
}
"""Resources of every step pod (merged under the step's own ``dagster-k8s/config`` tags)."""

K8S_EXECUTOR_CONFIG: dict[str, Any] = {
    "step_k8s_config": STEP_K8S_CONFIG,
    # the pods a run starts at once: a day x tile run is a chain, a season run fans out over tiles
    "max_concurrent": 8,
}

k8s_executor = k8s_job_executor.configured(K8S_EXECUTOR_CONFIG, name="kz_k8s")
"""The executor of the Kubernetes code location (`kz_pipelines.definitions_k8s`)."""
