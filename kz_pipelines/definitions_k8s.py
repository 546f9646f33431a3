"""The kz_pipelines code location on Kubernetes: the same assets, jobs, schedules and sensors as
`kz_pipelines.definitions`, each step of a run in its own pod (`kz_pipelines.defs.k8s`). The Helm values in
``infra/helm/values.yaml`` load this module."""

from kz_pipelines.definitions import build_definitions
from kz_pipelines.defs.k8s import k8s_executor

defs = build_definitions(k8s_executor)
