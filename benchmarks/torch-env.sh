# Sourced by the benchmarks that run PyTorch: sets `torch_python`, installing PyPI's torch (and what the race's
# report needs) into .deps/torch-venv on first use, unless TORCH_PYTHON names a python that has them.
torch_python() {
  local root venv
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  venv=$root/.deps/torch-venv
  if [[ -n ${TORCH_PYTHON:-} ]]; then
    echo "$TORCH_PYTHON"
    return
  fi
  if ! "$venv/bin/python" -c 'import torch, matplotlib, onnxruntime' 2>/dev/null; then
    echo "== installing PyPI torch, matplotlib and onnxruntime into .deps/torch-venv (first run only, several GB)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --progress-bar off torch matplotlib \
      "$(ls "$root"/.deps/wheels/onnxruntime-*.whl | head -n 1)" >&2
  fi
  echo "$venv/bin/python"
}
