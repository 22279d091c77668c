#!/usr/bin/env bash
# Instructions per request on inferd's request path, with valgrind's
# callgrind (counts are repeatable even on a shared, noisy machine).
#
#   bench/callgrind.sh [N]     (N requests per path [300]; needs build/inferd)
#
# Starts build/inferd under callgrind with instrumentation off (libtorch's
# load and warm-up are not counted), sends 20 warm-up requests, turns
# instrumentation on, sends N sequential requests on one keep-alive
# connection, dumps, and repeats for the next path. Paths: JSON POST
# /predict with one Fashion-MNIST test image; POST
# /v2/models/fashion_mnist/infer with the same image as a v2 binary tensor
# (binary output asked for); POST /v2/models/null602/infer with one
# 3x224x224 FP32 tensor (602,112 bytes) as a v2 binary tensor to a
# null-style model made here. Prints, per path, instructions per request in
# all inferd's threads (Ir), the model's share (inclusive Ir of
# shim_model_forward) and the rest: the server's own path. The daemon runs
# with its default log level (info: one access-log line per request), in
# JSON, to a file.
# Output files: bench/out/callgrind/. INFERD picks the binary
# [build/inferd].
#
# Valgrind 3.19 does not know RDTSCP, which Debian's libhwy (pulled in by
# libtorch's dependencies) runs while it loads: the script uses a copy of
# libhwy with RDTSCP replaced by RDTSC + NOP (same length; only its timer
# calibration sees the difference), through LD_LIBRARY_PATH. OMP_WAIT_POLICY
# is set as inferd would set it, so that it does not re-execute itself.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:-300}
INFERD=${INFERD:-build/inferd}
OUT=bench/out/callgrind
mkdir -p "$OUT/lib"
rm -f "$OUT"/callgrind.out.*
HWY=$(ldd "$INFERD" | awk '/libhwy/ && !seen {print $3; seen = 1}') # no early exit: pipefail would see ldd's SIGPIPE
if [ -n "$HWY" ]; then
    /usr/bin/python3 - "$HWY" "$OUT/lib/$(basename "$HWY")" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data = data.replace(b"\x0f\x01\xf9", b"\x0f\x31\x90")  # rdtscp -> rdtsc; nop
open(sys.argv[2], "wb").write(data)
PY
fi
# The repository: models/ plus `null602`, a null-style model (a sum over
# every 16th pixel per channel: a forward of a few microseconds) taking one
# 3x224x224 FP32 image, 602,112 bytes: the issue 22 payload.
REPO="$OUT/repo"
rm -rf "$REPO"
mkdir -p "$REPO/null602"
for m in models/*/; do ln -s "$ROOT/$m" "$REPO/$(basename "$m")"; done
/usr/bin/python3 - "$REPO/null602" <<'PY'
import json, sys, torch
class Null602(torch.nn.Module):
    def forward(self, x):
        return x[:, :, ::16, ::16].sum(dim=(2, 3))
torch.jit.trace(Null602(), torch.zeros(2, 3, 224, 224)).save(sys.argv[1] + "/model.pt")  # no source file to script from
json.dump({"name": "null602", "file": "model.pt",
           "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
           "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}],
           "max_batch_size": 8, "max_queue_delay_us": 500},
          open(sys.argv[1] + "/config.json", "w"))
PY
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
OMP_WAIT_POLICY=PASSIVE LD_LIBRARY_PATH="$ROOT/$OUT/lib" valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$OUT/callgrind.out.%p" "$INFERD" --host 127.0.0.1 --port "$PORT" --model-repository "$REPO" --devices cpu \
    --log-format json >"$OUT/inferd.log" 2>&1 &
VG=$!
trap 'kill $VG 2>/dev/null; wait $VG 2>/dev/null || true' EXIT
/usr/bin/python3 - "$PORT" "$N" "$VG" "$OUT" <<'PY'
import http.client, json, os, subprocess, sys, time
import numpy as np
sys.path.insert(0, "models")
import fashion_mnist_data
port, n, vg, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
x, _ = fashion_mnist_data.load("test")
img = x[0:1]
json_body = json.dumps({"inputs": img.round(6).tolist()}).encode()
header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                  "parameters": {"binary_data_size": img.nbytes}}],
                     "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
v2_body = header + img.astype("<f4").tobytes()
big = (np.arange(3 * 224 * 224, dtype="<f4") % 251 / 251).reshape(1, 3, 224, 224)
big_header = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 224, 224],
                                      "parameters": {"binary_data_size": big.nbytes}}],
                         "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
paths = {
    "json": ("/predict", json_body, {"Content-Type": "application/json"}),
    "v2binary": ("/v2/models/fashion_mnist/infer", v2_body,
                 {"Content-Type": "application/octet-stream",
                  "Inference-Header-Content-Length": str(len(header))}),
    "v2binary_602k": ("/v2/models/null602/infer", big_header + big.tobytes(),
                      {"Content-Type": "application/octet-stream",
                       "Inference-Header-Content-Length": str(len(big_header))}),
}
deadline = time.time() + 300
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/v2/health/ready")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit("inferd under valgrind not ready in 300 s")
    time.sleep(2)
for name, (path, body, headers) in paths.items():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    def post():
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        assert r.status == 200, (name, r.status, data[:200])
    for _ in range(20):
        post()
    subprocess.run(["callgrind_control", "-z", vg], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-i", "on", vg], check=True, capture_output=True)
    for _ in range(n):
        post()
    subprocess.run(["callgrind_control", "-i", "off", vg], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", name, vg], check=True, capture_output=True)
    c.close()
PY
kill -TERM $VG; wait $VG || true
trap - EXIT
for f in "$OUT"/callgrind.out.*.*; do
    name=$(grep -m1 '^desc: Trigger' "$f" | sed 's/.*dump //')
    total=$(grep -m1 '^totals:' "$f" | awk '{print $2}')
    model=$(callgrind_annotate --inclusive=yes --threshold=100 "$f" 2>/dev/null |
            awk '/shim_model_forward \[/ {gsub(",","",$1); print $1; exit}' || true)
    model=${model:-0}
    # memcpy/memmove (glibc's vector variants), exclusive: the copying cost
    copy=$(callgrind_annotate --threshold=100 "$f" 2>/dev/null |
           awk '!/=>/ && /:__mem(cpy|move)_[a-z0-9_]*unaligned[a-z_]* \[/ {gsub(",","",$1); s += $1} END {print s + 0}')
    echo "$f $name: $((total / N)) Ir/request; model (shim_model_forward) $((model / N)); server path $(((total - model) / N)); memcpy/memmove $((copy / N))"
done
