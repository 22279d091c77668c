#!/usr/bin/env python3
"""gRPC ModelInfer against HTTP v2 binary, same model and payload, one run.

Starts build/inferd (gRPC on) serving models/, then drives each protocol in
turn at each concurrency with the same client harness: P processes (no GIL
between them), each with its share of the C threads, every thread one
connection (HTTP keep-alive) or one stub on its process's channel (gRPC),
sending one fashion_mnist image (FP32 [1,1,28,28], 3136 bytes) in binary
form and reading the raw logits back. Prints req/s (over the run including
its first second, a warm-up), p50, p99 and the server's CPU time per request
(from /proc: what the protocol costs inferd, whatever the client costs) per
point and writes bench/out/grpc_vs_http.csv.

    python3 bench/grpc_vs_http.py [--seconds 10] [--conc 1,8,32,128]
                                  [--client c|python] [--rounds 3] [--channels 1]

With --client c (the default) the clients are C programs, one thread each:
wrk with bench/post.lua for HTTP (C connections) and build/bench/grpc_load
for gRPC (C calls in flight on one channel), alternating in rounds; the
python client (--client python) costs more per call than the server does.

The client runs on the same machine as the server: on a small machine read
the ratios, not the absolute figures.
"""
import argparse
import csv
import http.client
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stubs(out):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}",
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    str(ROOT / "proto" / "inference.proto")], check=True)


IMAGE = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)


def http_worker(port, stop_at, lat, errors):
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                   "parameters": {"binary_data_size": IMAGE.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    body = head + IMAGE.tobytes()
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(head))}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while time.monotonic() < stop_at:
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v2/models/fashion_mnist/infer", body, headers)
            r = conn.getresponse()
            data = r.read()
            ok = r.status == 200 and len(data) > 40
        except (OSError, http.client.HTTPException):
            ok = False
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        if ok:
            lat.append(time.perf_counter() - t0)
        else:
            errors.append(1)


def grpc_worker(stub, pb, stop_at, lat, errors):
    req = pb.ModelInferRequest(model_name="fashion_mnist")
    req.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    req.raw_input_contents.append(IMAGE.tobytes())
    import grpc
    while time.monotonic() < stop_at:
        t0 = time.perf_counter()
        try:
            r = stub.ModelInfer(req, timeout=30)
            ok = len(r.raw_output_contents[0]) == 40
        except grpc.RpcError:
            ok = False
        if ok:
            lat.append(time.perf_counter() - t0)
        else:
            errors.append(1)


def process_main(proto, ports, threads, start_at, stop_at, stub_dir, queue):
    lat, errors = [], []
    if proto == "grpc":
        sys.path.insert(0, stub_dir)
        import grpc
        import inference_pb2 as pb
        import inference_pb2_grpc as pbg
        channel = grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}")
        stub = pbg.GRPCInferenceServiceStub(channel)
        stub.ServerLive(pb.ServerLiveRequest())
        target, args = grpc_worker, (stub, pb)
    else:
        target, args = http_worker, (ports["http"],)
    time.sleep(max(0.0, start_at - time.monotonic()))
    ts = [threading.Thread(target=target, args=(*args, stop_at, lat, errors))
          for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    queue.put((lat, len(errors)))


def cpu_seconds(pid):
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_point(proto, conc, seconds, ports, stub_dir, procs, server_pid):
    procs = min(procs, conc)
    share = [conc // procs + (1 if i < conc % procs else 0) for i in range(procs)]
    start_at = time.monotonic() + 1.5
    warm_until = start_at + 1.0
    stop_at = warm_until + seconds
    queue = mp.Queue()
    ps = [mp.Process(target=process_main,
                     args=(proto, ports, n, start_at, stop_at, stub_dir, queue)) for n in share]
    for p in ps:
        p.start()
    cpu0 = cpu_seconds(server_pid)
    results = [queue.get() for _ in ps]
    cpu = cpu_seconds(server_pid) - cpu0
    for p in ps:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    # every call counts in the throughput; warm-up is the first second's share
    n = len(lat)
    rps = n / (seconds + 1.0)
    p50 = lat[n // 2] * 1e3 if n else float("nan")
    p99 = lat[min(n - 1, int(n * 0.99))] * 1e3 if n else float("nan")
    return {"protocol": proto, "concurrency": conc, "requests": n, "errors": errors,
            "req_s": round(rps, 1), "p50_ms": round(p50, 2), "p99_ms": round(p99, 2),
            "server_cpu_us_per_req": round(cpu / n * 1e6, 1) if n else float("nan"),
            "loadavg1": os.getloadavg()[0]}


def c_clients(ports, stub_dir, out_dir):
    """The request files and commands of the C clients: wrk (bench/post.lua)
    for HTTP, build/bench/grpc_load for gRPC, one client thread each."""
    sys.path.insert(0, stub_dir)
    import inference_pb2 as pb
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                   "parameters": {"binary_data_size": IMAGE.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    (out_dir / "grpc_vs_http.http.bin").write_bytes(head + IMAGE.tobytes())
    req = pb.ModelInferRequest(model_name="fashion_mnist")
    req.inputs.add(name="input", datatype="FP32", shape=[1, 1, 28, 28])
    req.raw_input_contents.append(IMAGE.tobytes())
    (out_dir / "grpc_vs_http.grpc.bin").write_bytes(req.SerializeToString())
    return {"http_env": dict(os.environ, BENCH_BODY=str(out_dir / "grpc_vs_http.http.bin"),
                             BENCH_CONTENT_TYPE="application/octet-stream",
                             BENCH_V2_HEADER_LENGTH=str(len(head))),
            "grpc_request": str(out_dir / "grpc_vs_http.grpc.bin")}


def run_point_c(proto, conc, seconds, ports, clients, server_pid, channels):
    """One point with the C client: (requests/s, p50 ms, p99 ms, errors, server CPU us/req)."""
    if proto == "http":
        cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s",
               str(ROOT / "bench" / "post.lua"),
               f"http://127.0.0.1:{ports['http']}/v2/models/fashion_mnist/infer"]
        env = clients["http_env"]
    else:
        cmd = [str(ROOT / "build" / "bench" / "grpc_load"), f"127.0.0.1:{ports['grpc']}",
               "/inference.GRPCInferenceService/ModelInfer", clients["grpc_request"],
               str(seconds), str(conc), str(min(conc, channels))]
        env = None
    cpu0 = cpu_seconds(server_pid)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    cpu = cpu_seconds(server_pid) - cpu0
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        sys.exit(f"{cmd[0]} printed no summary: {out.stdout[-500:]} {out.stderr[-500:]}")
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    n = int(f["requests"])
    errors = int(f.get("errors", 0)) + int(f.get("non2xx", 0)) + int(f.get("timeouts", 0))
    return {"protocol": proto, "concurrency": conc, "requests": n, "errors": errors,
            "req_s": round(float(f["rps"]), 1), "p50_ms": int(f["p50_us"]) / 1e3,
            "p99_ms": int(f["p99_us"]) / 1e3,
            "server_cpu_us_per_req": round(cpu / n * 1e6, 1) if n else float("nan"),
            "loadavg1": os.getloadavg()[0]}


def median_row(rows):
    """The median of each figure over the rounds of one point."""
    import statistics
    out = dict(rows[0])
    for k in ("requests", "errors", "req_s", "p50_ms", "p99_ms", "server_cpu_us_per_req",
              "loadavg1"):
        out[k] = statistics.median(r[k] for r in rows)
    out["errors"] = sum(r["errors"] for r in rows)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--conc", default="1,8,32,128")
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--binary", default=str(ROOT / "build" / "inferd"))
    ap.add_argument("--client", choices=("c", "python"), default="c",
                    help="c: wrk and build/bench/grpc_load, one client thread each "
                         "(make bench-grpc builds it); python: http.client and grpcio")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternating rounds per point (C client); medians are printed")
    ap.add_argument("--channels", type=int, default=1,
                    help="gRPC connections of the C client (default 1, one client channel)")
    args = ap.parse_args()
    ports = {"http": free_port(), "grpc": free_port()}
    stub_dir = tempfile.mkdtemp(prefix="inferd-bench-stubs-")
    stubs(stub_dir)
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    log = open(out_dir / "grpc_vs_http.inferd.log", "wb")
    env = dict(os.environ, INFERD_LOG_LEVEL="warn")
    server = subprocess.Popen([args.binary, "--host", "127.0.0.1", "--port", str(ports["http"]),
                               "--grpc-port", str(ports["grpc"]), "--model-repository",
                               str(ROOT / "models"), "--devices", "cpu", "--max-queue", "1024"],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=2)
                c.request("GET", "/v2/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("inferd did not become ready")
            time.sleep(0.2)
        rows = []
        print(f"{'protocol':8} {'c':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
              f" {'srv CPU us/req':>14} {'load':>5}")
        clients = c_clients(ports, stub_dir, out_dir) if args.client == "c" else None
        for conc in [int(x) for x in args.conc.split(",")]:
            if clients is not None:  # warm-up, then the two protocols in turns
                run_point_c("http", conc, 1, ports, clients, server.pid, args.channels)
                run_point_c("grpc", conc, 1, ports, clients, server.pid, args.channels)
                per = {"http": [], "grpc": []}
                for _ in range(args.rounds):
                    for proto in ("http", "grpc"):
                        per[proto].append(run_point_c(proto, conc, args.seconds, ports, clients,
                                                      server.pid, args.channels))
            for proto in ("http", "grpc"):
                if clients is not None:
                    row = median_row(per[proto])
                else:
                    row = run_point(proto, conc, args.seconds, ports, stub_dir, args.procs,
                                    server.pid)
                rows.append(row)
                print(f"{proto:8} {conc:4d} {row['req_s']:8.1f} {row['p50_ms']:8.2f} "
                      f"{row['p99_ms']:8.2f} {row['errors']:6d} "
                      f"{row['server_cpu_us_per_req']:14.1f} {row['loadavg1']:5.1f}",
                      flush=True)
        with open(out_dir / "grpc_vs_http.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
