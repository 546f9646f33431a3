"""Cloud mask with KappaMask's classes (0 missing, 1 clear, 2 cloud shadow, 3 semi-transparent cloud,
4 cloud): segmentation-models-pytorch networks, seamless tiled prediction on CPU or CUDA, training on
labelled chips, and model files (safetensors + a JSON model card). No Dagster here.

Modules: ``classes`` (classes, band sets, normalization), ``net`` (model specs and builder), ``predict``
(tiled inference), ``chips`` (the labelled-chip format, cutting chips from a simulated region),
``train`` (loss, augmentation, early stopping), ``metrics`` (Dice per class), ``card`` (save/load),
``report`` (plots).

Import what you use from its module. The package itself imports nothing, and ``classes``, ``net``, ``card``,
``metrics`` and ``chips`` import without torch: the code location loads in every run and every Kubernetes
step pod, and only the steps that predict or train pay for torch.
"""
