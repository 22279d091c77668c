"""The monitoring profile's files, without an engine: the Prometheus rules
(promtool check rules, promtool test rules with the series in
deploy/prometheus/rules_test.yml), the Grafana dashboard (type-checked
against npm @grafana/schema by tests/deploy/grafana/check.mjs) and its
panels. test_deploy.py runs them against the real Prometheus."""
import json
import shutil
import subprocess

import pytest
import yaml

from deploy_support import ROOT

PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
CHECKER = ROOT / "tests" / "deploy" / "grafana"


def promtool(*args):
    assert shutil.which("promtool"), "promtool is needed: apt-get install prometheus"
    return subprocess.run(["promtool", *args], cwd=PROM, capture_output=True, text=True,
                          timeout=120)


def test_rules_check():
    p = promtool("check", "rules", "rules.yml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_rules_unit_tests():
    p = promtool("test", "rules", "rules_test.yml")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_every_alert_asked_for_has_a_rule_and_a_unit_test():
    rules = yaml.safe_load((PROM / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    wanted = {"InferdReplicaDown", "InferdQueueSaturated", "InferdHigh5xxRatio",
              "InferdP99LatencyHigh", "InferdGpuMemoryNearCap"}
    assert wanted <= alerts
    tests = yaml.safe_load((PROM / "rules_test.yml").read_text())["tests"]
    firing = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])
              if t.get("exp_alerts")}
    assert alerts <= firing, f"alerts never seen firing in rules_test.yml: {alerts - firing}"


def test_prometheus_config_discovers_replicas_by_dns():
    cfg = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    (sd,) = jobs["inferd"]["dns_sd_configs"]
    assert sd["names"] == ["inference"] and sd["type"] == "A" and sd["port"] == 8080
    assert jobs["nginx"]["static_configs"][0]["targets"] == ["nginx-exporter:9113"]


@pytest.fixture(scope="module")
def node_modules():
    if not shutil.which("node") or not shutil.which("npm"):
        pytest.fail("node and npm are needed: apt-get install nodejs npm")
    if not (CHECKER / "node_modules" / "@grafana" / "schema").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=CHECKER, check=True, timeout=300)


def test_dashboard_type_checks_against_grafana_schema(node_modules):
    p = subprocess.run(["node", "check.mjs", str(GRAFANA / "dashboards")], cwd=CHECKER,
                       capture_output=True, text=True, timeout=300)
    print(p.stdout, p.stderr)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok   inferd.json" in p.stdout


def test_dashboard_has_the_panels_asked_for():
    dash = json.loads((GRAFANA / "dashboards" / "inferd.json").read_text())
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in dash["panels"]}
    need = {
        "Requests per second per replica": "by (replica) (rate(inferd_requests_total",
        "Requests per second per model": "by (model) (rate(inferd_requests_total",
        "Latency p50 and p99": "histogram_quantile(0.99",
        "Queue depth per replica": "inferd_queue_pending_requests",
        "Batch size distribution": "inferd_batch_size_bucket",
        "4xx and 5xx ratio": 'status=~"5.."',
        "GPU memory used": "inferd_gpu_memory_used_bytes",
        "GPU utilisation": "inferd_gpu_utilization_ratio",
    }
    for title, fragment in need.items():
        assert fragment in exprs.get(title, ""), title
    assert "histogram_quantile(0.5," in exprs["Latency p50 and p99"]
    # every panel reads the provisioned data source
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert all(p["datasource"]["uid"] == uid for p in dash["panels"])
    # ids and grid positions do not collide
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
