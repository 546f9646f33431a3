#!/usr/bin/env bash
# Regenerate the images' lock files (pip install uv first). From any directory:
#   bash infra/requirements/compile.sh            # keep current pins where still allowed
#   bash infra/requirements/compile.sh --upgrade  # newest versions the constraints allow
#
#   cuda.txt       the cuda image: pyproject.toml's dependencies + extra.in, all from PyPI (torch's default
#                  PyPI build is the CUDA 13.0 one), every file hashed
#   cpu.txt        the cpu image: the same without torch and torchvision and without PyPI torch's CUDA
#                  packages (cpu-overrides.txt), every file hashed
#   torch-cpu.txt  the cpu image's torch and torchvision, from the PyTorch CPU index (torch-cpu.in)
set -euo pipefail
cd "$(dirname "$0")/../.."
req=infra/requirements
common=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --emit-index-url
        --custom-compile-command "bash $req/compile.sh" "$@")

uv pip compile pyproject.toml "$req/extra.in" "${common[@]}" --index-url https://pypi.org/simple \
  --output-file "$req/cuda.txt"
uv pip compile pyproject.toml "$req/extra.in" "${common[@]}" --index-url https://pypi.org/simple \
  --override "$req/cpu-overrides.txt" --no-emit-package torch --no-emit-package torchvision \
  --output-file "$req/cpu.txt"
uv pip compile "$req/torch-cpu.in" "${common[@]}" --index-url https://download.pytorch.org/whl/cpu --no-deps \
  --output-file "$req/torch-cpu.txt"
