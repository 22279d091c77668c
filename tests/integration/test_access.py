"""API keys (--api-key-file, --metrics-need-key) and CORS (--cors-allow-origin)
on the real daemon: 401 with WWW-Authenticate and JSON, both key headers,
open health, keyed or open /metrics, SIGHUP re-reading the file, keys never
in the log, start-up errors, the permission warning, and CORS preflights."""
import os
import signal
import subprocess
import time

import pytest

from support import (assert_error, child_env, daemon_devices, dumps, free_port,
                     inferd_binary, rounded_list, sample_image)

KEYS = ["k-alpha-7f3c9e", "k-beta-18d2aa"]
PREDICT = dumps({"inputs": rounded_list(sample_image()[None])})
JSON = {"Content-Type": "application/json"}


def key_file(tmp_path, lines, mode=0o600, name="keys"):
    path = tmp_path / name
    path.write_bytes("".join(lines).encode())
    os.chmod(path, mode)
    return path


def predict(daemon, headers=None):
    return daemon.post("/predict", data=PREDICT, headers={**JSON, **(headers or {})})


def test_keys(start_daemon, tmp_path):
    path = key_file(tmp_path, ["# team keys\r\n", "\r\n", f"{KEYS[0]}\r\n", f"  {KEYS[1]}\n"])
    d = start_daemon(["--api-key-file", str(path)])
    # no key / wrong key: 401, JSON, WWW-Authenticate
    r = predict(d)
    msg = assert_error(r, 401)
    assert "Authorization: Bearer" in msg
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = "k-alpha-7f3c9f"
    r = predict(d, {"Authorization": f"Bearer {wrong}"})
    assert_error(r, 401)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert_error(predict(d, {"X-API-Key": KEYS[0][:-1]}), 401)
    assert_error(predict(d, {"Authorization": f"Basic {KEYS[0]}"}), 401)
    # either header with a listed key: served
    r = predict(d, {"Authorization": f"Bearer {KEYS[0]}"})
    assert r.status_code == 200, r.text
    assert len(r.json()["labels"]) == 1
    assert predict(d, {"X-API-Key": KEYS[1]}).status_code == 200
    # metadata and repository control need a key as well
    assert_error(d.get("/v2/models/fashion_mnist"), 401)
    assert_error(d.get("/v2/repository/index"), 401)
    assert d.get("/v2/models/fashion_mnist", headers={"X-API-Key": KEYS[1]}).status_code == 200
    infer = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28],
                         "data": [round(float(v), 6) for v in sample_image().ravel()]}]}
    r = d.post("/v2/models/fashion_mnist/infer", data=dumps(infer), headers=JSON)
    assert_error(r, 401)
    r = d.post("/v2/models/fashion_mnist/infer", data=dumps(infer),
               headers={**JSON, "Authorization": f"Bearer {KEYS[1]}"})
    assert r.status_code == 200, r.text
    # health and metrics stay open
    assert d.get("/v2/health/ready").status_code == 200
    assert d.get("/v2/health/live").status_code == 200
    assert d.get("/metrics").status_code == 200
    # no key, right or wrong, in the log
    time.sleep(0.3)
    log = d.log_text()
    for k in KEYS + [wrong]:
        assert k not in log, f"a key is in the log:\n{log}"
    assert "2 key(s)" in log
    assert "can be read by group or others" not in log


def test_sighup_rereads_keys(start_daemon, tmp_path):
    path = key_file(tmp_path, [KEYS[0] + "\n"])
    d = start_daemon(["--api-key-file", str(path)])
    assert predict(d, {"X-API-Key": KEYS[0]}).status_code == 200
    assert_error(predict(d, {"X-API-Key": KEYS[1]}), 401)
    key_file(tmp_path, [KEYS[1] + "\n"])
    d.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while predict(d, {"X-API-Key": KEYS[1]}).status_code != 200:
        assert time.monotonic() < deadline, d.describe()
        time.sleep(0.05)
    assert_error(predict(d, {"X-API-Key": KEYS[0]}), 401)
    # a broken file on SIGHUP: logged, the keys in force stay, still running
    key_file(tmp_path, ["\n", "# nothing\n"])
    d.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "previous keys stay in force" not in d.log_text():
        assert time.monotonic() < deadline, d.describe()
        time.sleep(0.05)
    assert predict(d, {"X-API-Key": KEYS[1]}).status_code == 200
    assert d.proc.poll() is None


def test_metrics_need_key(start_daemon, tmp_path):
    path = key_file(tmp_path, [KEYS[0] + "\n"])
    d = start_daemon(["--api-key-file", str(path), "--metrics-need-key"])
    assert_error(d.get("/metrics"), 401)
    r = d.get("/metrics", headers={"Authorization": f"Bearer {KEYS[0]}"})
    assert r.status_code == 200 and "inferd_" in r.text
    assert d.get("/v2/health/ready").status_code == 200


def test_loose_permissions_warn(start_daemon, tmp_path):
    path = key_file(tmp_path, [KEYS[0] + "\n"], mode=0o644)
    d = start_daemon(["--api-key-file", str(path)])
    assert "can be read by group or others" in d.log_text()
    assert predict(d, {"X-API-Key": KEYS[0]}).status_code == 200


def run_to_exit(args, tmp_path, env=None):
    port = free_port()
    return subprocess.run([str(inferd_binary()), "--host", "127.0.0.1", "--port", str(port),
                           "--devices", daemon_devices(), *args], cwd=tmp_path,
                          env=child_env(env), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)


@pytest.mark.parametrize("case", ["missing", "empty", "bad line"])
def test_bad_key_file_stops_start_up(tmp_path, model_repo, case):
    if case == "missing":
        path = tmp_path / "no-such-keys"
    elif case == "empty":
        path = key_file(tmp_path, ["\n", "\r\n"])
    else:
        path = key_file(tmp_path, ["good-key\n", "has secret space\n"])
    result = run_to_exit(["--model-repository", str(model_repo),
                          "--api-key-file", str(path)], tmp_path)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert str(path) in out, out
    assert {"missing": "No such file", "empty": "no key", "bad line": "line 2"}[case] in out, out
    assert "secret" not in out


def test_key_file_from_environment(tmp_path, model_repo):
    result = run_to_exit(["--model-repository", str(model_repo)], tmp_path,
                         env={"INFERD_API_KEY_FILE": str(tmp_path / "absent")})
    assert result.returncode != 0 and "absent" in result.stderr + result.stdout


def test_help_mentions_the_flags(tmp_path):
    result = subprocess.run([str(inferd_binary()), "--help"], capture_output=True, text=True,
                            timeout=10)
    for flag in ("--api-key-file", "--metrics-need-key", "--cors-allow-origin",
                 "INFERD_API_KEY_FILE", "INFERD_METRICS_NEED_KEY", "INFERD_CORS_ALLOW_ORIGIN"):
        assert flag in result.stdout, flag


def test_cors(start_daemon, tmp_path):
    path = key_file(tmp_path, [KEYS[0] + "\n"])
    d = start_daemon(["--api-key-file", str(path),
                      "--cors-allow-origin", "https://app.example.com,http://localhost:3000"])
    pre = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "authorization, content-type"}
    r = d.request("OPTIONS", "/v2/models/fashion_mnist/infer", headers=pre)
    assert r.status_code == 204, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    allowed = r.headers["Access-Control-Allow-Headers"]
    for h in ("Authorization", "Content-Type", "Inference-Header-Content-Length"):
        assert h in allowed
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Vary"] == "Origin"
    # the real request: its key, and CORS headers on the answer (also a 401)
    r = predict(d, {"Origin": "http://localhost:3000", "X-API-Key": KEYS[0]})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    r = predict(d, {"Origin": "http://localhost:3000"})
    assert_error(r, 401)
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    # another origin: refused preflight, no CORS headers on answers
    r = d.request("OPTIONS", "/predict", headers={**pre, "Origin": "https://evil.example"})
    assert_error(r, 403)
    assert "Access-Control-Allow-Origin" not in r.headers
    r = predict(d, {"Origin": "https://evil.example", "X-API-Key": KEYS[0]})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_cors_any_and_off(start_daemon):
    d = start_daemon(["--cors-allow-origin", "*"])
    r = d.request("OPTIONS", "/predict", headers={"Origin": "https://x.example",
                                                  "Access-Control-Request-Method": "POST"})
    assert r.status_code == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert predict(d, {"Origin": "https://y.example"}).headers[
        "Access-Control-Allow-Origin"] == "*"
    off = start_daemon([])
    r = off.request("OPTIONS", "/predict", headers={"Origin": "https://x.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert_error(r, 405)
    assert "Access-Control-Allow-Origin" not in predict(off, {"Origin": "https://x.example"}).headers


def test_bad_origin_flag_stops_start_up(tmp_path, model_repo):
    result = run_to_exit(["--model-repository", str(model_repo),
                          "--cors-allow-origin", "app.example.com"], tmp_path)
    assert result.returncode != 0
    assert "--cors-allow-origin" in result.stderr + result.stdout
