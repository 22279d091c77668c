"""deploy/k8s: valid against the Kubernetes API schemas (npm kubernetes-models,
tests/deploy/k8s/validate.mjs) and consistent with inferd's contracts."""
import os
import shutil
import subprocess

import pytest
import yaml

from deploy_support import ROOT

K8S = ROOT / "deploy" / "k8s"
VALIDATOR = ROOT / "tests" / "deploy" / "k8s"
DRAIN_S = 8  # INFERD_DRAIN_TIMEOUT_S in deployment.yaml and docker-compose.yml


def objects():
    out = {}
    for f in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                out[(doc["kind"], doc.get("metadata", {}).get("name"))] = doc
    return out


@pytest.fixture(scope="module")
def node_modules():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are needed: apt-get install nodejs npm")
    if not (VALIDATOR / "node_modules" / "kubernetes-models").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=VALIDATOR, check=True, timeout=300)


def test_manifests_validate_against_api_schemas(node_modules):
    p = subprocess.run(["node", "validate.mjs", str(K8S)], cwd=VALIDATOR,
                       capture_output=True, text=True, timeout=120)
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    n = sum(1 for f in K8S.glob("*.yaml") if f.name != "kustomization.yaml"
            for d in yaml.safe_load_all(f.read_text()) if d)
    assert p.stdout.count("ok   ") >= n, (n, p.stdout)


def test_deployment_matches_inferd_contracts():
    objs = objects()
    dep = objs[("Deployment", "inferd")]
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert int(env["INFERD_DRAIN_TIMEOUT_S"]) == DRAIN_S
    # ready: the kubelet's gRPC probe on grpc.health.v1 (SERVING when
    # ready) at the gRPC port; live: HTTP (the process, also while loading)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "grpc": 8001}, ports
    assert int(env["INFERD_GRPC_PORT"]) == ports["grpc"]
    assert c["readinessProbe"]["grpc"] == {"port": ports["grpc"], "service": ""}
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["resources"]["limits"]["nvidia.com/gpu"] >= 1
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # the grace period covers the preStop sleep and the whole drain
    assert pod["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + DRAIN_S
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    labels = dep["spec"]["template"]["metadata"]["labels"]
    for (kind, name), o in objs.items():
        if kind == "Service":
            assert o["spec"]["selector"].items() <= labels.items(), name
            # both ports on both Services; gRPC marked as HTTP/2 cleartext
            sp = {p["name"]: p for p in o["spec"]["ports"]}
            assert set(sp) == {"http", "grpc"}, name
            assert sp["grpc"]["targetPort"] == "grpc", name
            assert sp["grpc"]["appProtocol"] == "kubernetes.io/h2c", name
    hpa = objs[("HorizontalPodAutoscaler", "inferd")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "inferd"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


def test_pod_is_locked_down():
    """No service-account token in the pod, a writable /tmp beside the
    read-only root, and no model control over HTTP without a token."""
    pod = objects()[("Deployment", "inferd")]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # explicit mode trusts loopback without a token file, and a sidecar
    # proxy in the pod makes every client loopback
    assert env.get("INFERD_MODEL_CONTROL_MODE", "none") != "explicit" or \
        env.get("INFERD_ADMIN_TOKEN_FILE"), env
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in vols[mounts["/tmp"]]


def test_network_policy_admits_only_the_proxy_and_prometheus():
    """The pods' port is not open to the whole cluster: /metrics, the
    repository index, model configuration and statistics answer whoever
    reaches it, so a NetworkPolicy admits only named sources."""
    objs = objects()
    assert "networkpolicy.yaml" in yaml.safe_load((K8S / "kustomization.yaml").read_text())[
        "resources"]
    pol = objs[("NetworkPolicy", "inferd")]
    labels = objs[("Deployment", "inferd")]["spec"]["template"]["metadata"]["labels"]
    spec = pol["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= labels.items()
    assert {"Ingress", "Egress"} <= set(spec["policyTypes"])
    assert spec.get("egress", []) == []  # inferd calls nobody
    assert spec["ingress"], "no ingress rule: nothing could reach the pods"
    for rule in spec["ingress"]:
        # a rule without `from` (or with an empty selector) admits everyone
        assert rule.get("from"), rule
        for peer in rule["from"]:
            assert "ipBlock" not in peer, peer
            for sel in ("podSelector", "namespaceSelector"):
                if sel in peer:
                    assert peer[sel].get("matchLabels") or peer[sel].get("matchExpressions"), peer
        assert [p["port"] for p in rule["ports"]] in (["http"], ["http", "grpc"]), rule
    peers = [p for r in spec["ingress"] for p in r["from"]]
    # gRPC only from the proxy (its public methods); Prometheus: HTTP only
    for rule in spec["ingress"]:
        names = {p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                 for p in rule["from"]}
        if "prometheus" in names:
            assert [p["port"] for p in rule["ports"]] == ["http"], rule
    assert any("inferd-nginx" in {p.get("podSelector", {}).get("matchLabels", {}).get(
        "app.kubernetes.io/name") for p in r["from"]} and
        [p["port"] for p in r["ports"]] == ["http", "grpc"] for r in spec["ingress"])
    # Prometheus only together with its namespace, not any pod so named
    prom = [p for p in peers if p.get("podSelector", {}).get("matchLabels", {}).get(
        "app.kubernetes.io/name") == "prometheus"]
    assert prom and all("namespaceSelector" in p for p in prom)
