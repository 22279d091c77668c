"""The Python modules a test's gRPC client needs, generated from inferd's own
proto/ files with grpc_tools.protoc (Debian's python3-grpc-tools). Shared by
the integration tests (test_grpc.py) and the deploy test
(tests/deploy/deploy_support.py); imports nothing else of either.
"""
import subprocess
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parents[2] / "proto"


def generate(out):
    """Generate the modules into the folder out, put it first on sys.path and
    return them: .inference, .inference_grpc, .health, .health_grpc."""
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}",
                    f"--python_out={out}", f"--grpc_python_out={out}",
                    str(PROTO_DIR / "inference.proto"),
                    str(PROTO_DIR / "health.proto")], check=True)
    sys.path.insert(0, str(out))
    import health_pb2
    import health_pb2_grpc
    import inference_pb2
    import inference_pb2_grpc

    class Modules:
        inference, inference_grpc = inference_pb2, inference_pb2_grpc
        health, health_grpc = health_pb2, health_pb2_grpc
    return Modules
