#!/usr/bin/env bash
# Measures what a CUDA process costs on the GPU before any model: the CUDA context, then cuBLAS
# workspaces and allocator slack after a first f16 matmul (torch, if installed). `rftx plan`
# charges this as "runtime overhead" on GPU devices (GPU_RUNTIME_BYTES in src/core/plan/predict.rs). Run on a
# GPU machine; prints one JSON object.
set -euo pipefail
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
python3 - <<'PY'
import json, subprocess
def used():
    out = subprocess.check_output(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"])
    return int(out.decode().split()[0])
try:
    import torch
except Exception as e:
    print(json.dumps({"error": f"no torch: {e}"}))
    raise SystemExit(0)
before = used()
torch.zeros(1, device="cuda")
torch.cuda.synchronize()
context = used()
a = torch.randn(2048, 2048, device="cuda", dtype=torch.float16)
(a @ a).sum().item()
torch.cuda.synchronize()
after = used()
print(json.dumps({
    "torch": torch.__version__,
    "device": torch.cuda.get_device_name(),
    "used_before_mib": before,
    "cuda_context_mib": context - before,
    "after_first_matmul_mib": after - before,
    "torch_reserved_mib": torch.cuda.memory_reserved() / 2**20,
    "runtime_overhead_mib": after - before - torch.cuda.memory_reserved() / 2**20,
}))
PY
