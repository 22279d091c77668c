"""deploy/kserve: the ServingRuntime and the InferenceService example are
valid against KServe's own CRD schemas (v0.20.0, vendored by
tests/deploy/kserve/vendor_crd_schemas.py: the served storage version's
openAPIV3Schema, descriptions removed; KServe is Apache-2.0), strictly: an
unknown field fails, as with `kubectl apply --validate=strict`. Then
inferd's side of the contract: v2 protocol, pytorch, /mnt/models, port and
probes."""
import copy
import gzip
import json
import re

import jsonschema
import pytest
import yaml

from deploy_support import ROOT

KSERVE = ROOT / "deploy" / "kserve"
SCHEMAS = ROOT / "tests" / "deploy" / "kserve" / "kserve-crd-schemas.json.gz"
PINNED = "v0.20.0"


def strict(schema):
    """A copy where every object with listed properties refuses others
    (the API server's strict field validation), unless the CRD keeps
    unknown fields (x-kubernetes-preserve-unknown-fields)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(s)
    return s


@pytest.fixture(scope="module")
def crds():
    with gzip.open(SCHEMAS, "rt") as f:
        data = json.load(f)
    assert data["tag"] == PINNED
    return {kind: (v["apiVersion"], strict(v["schema"])) for kind, v in data["schemas"].items()}


def manifests():
    out = {}
    for f in sorted(KSERVE.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                out[doc["kind"]] = doc
    return out


def errors(crds, doc):
    api, schema = crds[doc["kind"]]
    assert doc["apiVersion"] == api, (doc["kind"], doc["apiVersion"], api)
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    v = jsonschema.Draft7Validator(schema)
    return sorted(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc))


def test_manifests_valid_against_kserve_crds(crds):
    docs = manifests()
    assert set(docs) == {"ServingRuntime", "InferenceService"}
    for kind, doc in docs.items():
        assert errors(crds, doc) == [], kind


def test_validator_catches_mistakes(crds):
    """The check can fail: a misspelt field, a wrong type, a missing field."""
    docs = manifests()
    rt = copy.deepcopy(docs["ServingRuntime"])
    rt["spec"]["protocolVersion"] = ["v2"]  # the field is protocolVersions
    assert any("protocolVersion" in e for e in errors(crds, rt))
    rt = copy.deepcopy(docs["ServingRuntime"])
    rt["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    assert errors(crds, rt)
    rt = copy.deepcopy(docs["ServingRuntime"])
    del rt["spec"]["containers"][0]["name"]
    assert errors(crds, rt)
    isvc = copy.deepcopy(docs["InferenceService"])
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    assert errors(crds, isvc)
    isvc = copy.deepcopy(docs["InferenceService"])
    isvc["spec"]["predictor"]["model"]["storageURI"] = "s3://x"
    assert errors(crds, isvc)


def test_runtime_matches_inferd():
    docs = manifests()
    rt, isvc = docs["ServingRuntime"], docs["InferenceService"]
    spec = rt["spec"]
    assert spec["protocolVersions"] == ["v2", "grpc-v2"]
    assert {"name": "pytorch"}.items() <= spec["supportedModelFormats"][0].items()
    (c,) = spec["containers"]
    assert c["name"] == "kserve-container"  # the name KServe looks for
    args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
    assert args["model-repository"] == "/mnt/models"
    assert args["default-model"] == "{{.Name}}"
    port, grpc_port = int(args["port"]), int(args["grpc-port"])
    # KServe's port names: http1 for HTTP, h2c for gRPC
    assert [(p["name"], p["containerPort"]) for p in c["ports"]] == \
        [("http1", port), ("h2c", grpc_port)]
    # ready: the kubelet's gRPC probe on the health service
    assert c["readinessProbe"]["grpc"] == {"port": grpc_port, "service": ""}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": port}
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e["value"] for e in c["env"]}
    assert int(env["INFERD_DRAIN_TIMEOUT_S"]) == 8
    # every flag the runtime passes is one inferd knows
    help_text = (ROOT / "src" / "config.c").read_text()
    for flag in args:
        assert f'{{"{flag}",' in help_text, flag
    # the example uses this runtime, its format and protocol
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == rt["metadata"]["name"]
    assert model["modelFormat"]["name"] == "pytorch"
    assert model["protocolVersion"] == "v2"


def test_runtime_pod_is_locked_down():
    """A writable /tmp (a memory emptyDir) beside the read-only root, where
    libtorch unpacks a .pt2 package; no service-account token; no model
    control over HTTP (a sidecar proxy makes every client loopback)."""
    docs = manifests()
    spec = docs["ServingRuntime"]["spec"]
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in vols[mounts["/tmp"]], vols
    assert not any(m.get("readOnly") for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    env = {e["name"]: e["value"] for e in c["env"]}
    args = dict(a.lstrip("-").split("=", 1) for a in c["args"])
    mode = args.get("model-control-mode", env.get("INFERD_MODEL_CONTROL_MODE", "none"))
    assert mode != "explicit" or "admin-token-file" in args or "INFERD_ADMIN_TOKEN_FILE" in env
    assert docs["InferenceService"]["spec"]["predictor"]["automountServiceAccountToken"] is False
