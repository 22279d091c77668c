"""Backpressure: a full queue answers 503 with Retry-After at once (the
request never runs), a request still queued past --request-timeout-ms
answers 504 at its deadline and never runs, and a queued request whose
client left is dropped (499) and never runs. The default model is the slow
one (models/make_slow_model.py: y = 2x, each forward a roughly fixed ~0.2 s
or more, max_batch_size 4), so that work really piles up.
"""
import socket
import threading
import time

import numpy as np
import pytest

from support import assert_error, predict_head
from loadtools import (SLOW_MARGIN_FACTOR, SLOW_TARGET_MS, Client, add_slow, as_response,
                       metric, model_counters, request_lines, run_threads, scrape, slow_body,
                       slow_input)


@pytest.fixture(scope="module")
def slow_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("slow_repo")
    add_slow(repo)
    return repo


@pytest.fixture(scope="module")
def deadline_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("deadline_repo")
    add_slow(repo, factor=SLOW_MARGIN_FACTOR)
    return repo


def check_doubled(result, x):
    """A 200 whose outputs are exactly 2x for this request's own input."""
    assert result.error is None and result.status == 200, f"{result}"
    body = result.json
    assert body["shape"] == list(x.shape), f"{result}"
    assert np.array_equal(np.asarray(body["outputs"], dtype=np.float32), x * 2), \
        f"{result.tag}: outputs {body['outputs']} are not 2 * its input {x.tolist()}"


def clients_for(daemon, prefix, n, rows=1):
    xs = [slow_input(k, rows) for k in range(n)]
    clients = [Client(daemon.port, "/predict", slow_body(x), tag=f"{prefix}-{k}",
                      request_id=f"{prefix}-{k}") for k, x in enumerate(xs)]
    return xs, clients


def test_full_queue_answers_503_at_once(start_daemon, slow_repo):
    daemon = start_daemon(["--max-queue", "2", "--log-format", "json"], repo=slow_repo,
                          model="slow")
    before = model_counters(daemon, "slow")
    xs, clients = clients_for(daemon, "qf", 10)
    results = run_threads([c.run for c in clients], timeout=120)
    ok = [k for k, r in enumerate(results) if r.status == 200]
    busy = [k for k, r in enumerate(results) if r.status == 503]
    assert len(ok) + len(busy) == len(results), \
        f"answers other than 200/503: {[r for r in results if r.status not in (200, 503)]}"
    for k in ok:
        check_doubled(results[k], xs[k])
    assert busy, f"10 concurrent requests, --max-queue 2, no 503: {results}"
    # A 503 needs two queued behind a running batch: at least 3 accepted.
    assert len(ok) >= 3, f"only {len(ok)} accepted with --max-queue 2: {results}"
    lines = request_lines(daemon, [c.result.tag for c in clients])
    forwards_ms = [lines[results[k].tag]["compute_ms"] for k in ok]
    fastest_forward_s = min(forwards_ms) / 1000
    for k in busy:
        r = results[k]
        message = assert_error(as_response(r), 503)
        retry = r.headers.get("retry-after", "")
        assert retry.isdigit() and int(retry) >= 1, \
            f"503 for a full queue without a valid Retry-After ({retry!r}): {message}"
        # At once: long before a forward (let alone the queue) could finish.
        assert r.latency < fastest_forward_s, (
            f"{r.tag}: 503 took {r.latency:.3f} s; the fastest forward took "
            f"{fastest_forward_s:.3f} s")
        line = lines[r.tag]
        assert line["status"] == 503 and line["batch"] == 0, line
        assert line["total_ms"] < 500 * fastest_forward_s, \
            f"server took {line['total_ms']} ms to refuse {r.tag}"
    after = model_counters(daemon, "slow")
    assert after["inferences"] - before["inferences"] == len(ok), \
        f"{len(ok)} requests answered 200 but {after['inferences'] - before['inferences']} " \
        f"samples ran: refused requests ran"
    assert after["ok"] - before["ok"] == len(ok)
    assert after["pending"] == 0
    # Still serving afterwards (the queue is free again).
    x = slow_input(99, 3)
    check_doubled(Client(daemon.port, "/predict", slow_body(x), tag="after").run(), x)
    # The refusals are visible to operators: counted per model and status,
    # and the access-log line names the model (docs/operations.md: Metrics, Logs).
    refused = after["s503"] - before["s503"]
    assert refused == len(busy), (
        f"{len(busy)} requests to model slow answered 503 (queue full), but "
        f"inferd_requests_total{{model=\"slow\",status=\"503\"}} rose by {refused}; "
        f"access log: {lines[results[busy[0]].tag]}")
    assert all(lines[results[k].tag]["model"] == "slow" for k in busy), \
        f"queue-full 503 access-log line without the model: {lines[results[busy[0]].tag]}"


def test_request_queued_past_its_deadline_gets_504_and_never_runs(start_daemon, deadline_repo):
    timeout_ms = 100
    daemon = start_daemon(["--request-timeout-ms", str(timeout_ms), "--log-format", "json"],
                          repo=deadline_repo, model="slow")
    before = model_counters(daemon, "slow")
    xs, clients = clients_for(daemon, "dl", 8)
    results = run_threads([c.run for c in clients], timeout=120)
    ok = [k for k, r in enumerate(results) if r.status == 200]
    late = [k for k, r in enumerate(results) if r.status == 504]
    assert len(ok) + len(late) == len(results), \
        f"answers other than 200/504: {[r for r in results if r.status not in (200, 504)]}"
    assert ok, f"no request ran at all: {results}"
    model_s = SLOW_MARGIN_FACTOR * SLOW_TARGET_MS / 1000
    assert late, (f"8 concurrent requests on a ~{model_s:.1f} s model, max batch 4, "
                  f"--request-timeout-ms {timeout_ms}: none got 504: {results}")
    lines = request_lines(daemon, [r.tag for r in results])
    assert len(lines) == len(results), f"access-log lines missing\n{daemon.describe()}"
    for k in ok:
        check_doubled(results[k], xs[k])
        line = lines[results[k].tag]
        # Its deadline counts from before its arrival: running after more
        # than timeout_ms in the queue means it ran past its deadline.
        assert line["queue_ms"] <= timeout_ms, \
            f"{results[k].tag} ran after {line['queue_ms']} ms queued (deadline {timeout_ms})"
    for k in late:
        assert_error(as_response(results[k]), 504)
        line = lines[results[k].tag]
        assert line["batch"] == 0 and line["compute_ms"] == 0, \
            f"{results[k].tag} answered 504 but its log says it ran: {line}"
    after = model_counters(daemon, "slow")
    ran = after["inferences"] - before["inferences"]
    assert ran == len(ok) < len(results), \
        f"{len(results)} sent, {len(ok)} answered 200, {ran} samples ran: 504s ran"
    assert after["s504"] - before["s504"] == len(late)
    # Still serving afterwards.
    x = slow_input(77, 2)
    check_doubled(Client(daemon.port, "/predict", slow_body(x), tag="after").run(), x)


@pytest.fixture(scope="module")
def slowest_repo(tmp_path_factory):
    """One sample per forward, each about 12 x SLOW_TARGET_MS."""
    repo = tmp_path_factory.mktemp("slowest_repo")
    add_slow(repo, factor=12, max_batch_size=1)
    return repo


def test_queued_request_gets_504_at_its_deadline_while_the_worker_is_busy(start_daemon,
                                                                          slowest_repo):
    """The 504 comes when the deadline passes, not when the busy worker next
    looks at the queue (the deadline watcher)."""
    timeout_ms = 200
    daemon = start_daemon(["--request-timeout-ms", str(timeout_ms), "--log-format", "json"],
                          repo=slowest_repo, model="slow")
    before = model_counters(daemon, "slow")
    xa = slow_input(11, 1)
    first = Client(daemon.port, "/predict", slow_body(xa), tag="busy", request_id="busy")
    runner = threading.Thread(target=first.run, daemon=True)
    runner.start()
    # Wait until the first request is in the model (the queue is empty again).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        counters = model_counters(daemon, "slow")
        if first.sent.is_set() and counters["pending"] == 0:
            break
        time.sleep(0.02)
    time.sleep(0.1)
    second = Client(daemon.port, "/predict", slow_body(slow_input(12, 1)), tag="late",
                    request_id="late").run()
    runner.join(timeout=120)
    assert not runner.is_alive(), "the first request never finished"
    check_doubled(first.result, xa)
    assert_error(as_response(second), 504)
    assert second.latency >= timeout_ms / 1000 * 0.9, \
        f"504 after {second.latency * 1000:.0f} ms, before the {timeout_ms} ms deadline"
    # At its deadline, not when the busy worker next looks at the queue: the
    # running forward (~12 x SLOW_TARGET_MS) must still have been running.
    # (Without the watcher the 504 comes as that forward ends: 0 +- a few ms.)
    early_s = first.result.t_done - second.t_done
    assert second.latency < timeout_ms / 1000 + 0.5 and early_s > 0.1, (
        f"the 504 came {second.latency * 1000:.0f} ms after sending and "
        f"{early_s * 1000:.0f} ms before the running forward finished: the deadline was "
        f"not watched while the worker was busy")
    line = request_lines(daemon, ["late"])["late"]
    assert line["status"] == 504 and line["batch"] == 0 and line["compute_ms"] == 0, line
    after = model_counters(daemon, "slow")
    assert after["inferences"] - before["inferences"] == 1, "the late request ran"
    assert after["s504"] - before["s504"] == 1


def test_queued_request_of_a_departed_client_is_dropped_not_run(start_daemon, slowest_repo):
    """A client that closes its connection while its request waits behind a
    busy worker: the request leaves the queue within about the watcher's
    period, never runs, and is logged and counted as 499."""
    daemon = start_daemon(["--log-format", "json"], repo=slowest_repo, model="slow")
    before = model_counters(daemon, "slow")
    xa = slow_input(21, 1)
    first = Client(daemon.port, "/predict", slow_body(xa), tag="stays", request_id="stays")
    runner = threading.Thread(target=first.run, daemon=True)
    runner.start()
    assert first.sent.wait(30), "the first request was not sent"
    time.sleep(0.1)
    body = slow_body(slow_input(22, 1))
    head = predict_head(len(body), "leaves")
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as leaver:
        leaver.sendall(head + body)
        # Queued behind the running forward: the pending gauge shows it.
        deadline = time.monotonic() + 10
        while model_counters(daemon, "slow")["pending"] < 1:
            assert time.monotonic() < deadline, "the second request never showed as queued"
            time.sleep(0.02)
    closed_at = time.monotonic()
    while model_counters(daemon, "slow")["pending"] > 0:
        assert time.monotonic() - closed_at < 2.0, \
            "2 s after its client closed the connection the request is still queued"
        time.sleep(0.02)
    assert runner.is_alive(), "the running forward ended before the drop could be seen"
    runner.join(timeout=120)
    assert not runner.is_alive(), "the first request never finished"
    check_doubled(first.result, xa)
    line = request_lines(daemon, ["leaves"])["leaves"]
    assert line["status"] == 499 and line["batch"] == 0 and line["compute_ms"] == 0, line
    after = model_counters(daemon, "slow")
    assert after["inferences"] - before["inferences"] == 1, "the departed client's request ran"
    s = scrape(daemon)
    assert metric(s, "inferd_requests_total", model="slow", status="499") == 1
    # Still serving afterwards.
    x = slow_input(23, 1)
    check_doubled(Client(daemon.port, "/predict", slow_body(x), tag="after").run(), x)


def leave_after_sending(port, body, request_id, linger_s):
    """Send a /predict request on a raw connection, wait linger_s, close."""
    head = predict_head(len(body), request_id)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        time.sleep(linger_s)


def test_clients_leaving_under_load_lose_nothing_for_those_who_stay(start_daemon, slow_repo):
    """24 clients at once on the slow model, every other one closing its
    connection soon after sending: each one that stays gets its own doubled
    input; each one that left is logged either 499 (dropped from the queue)
    or 200 (it was already running); the counters add up and the daemon
    keeps serving."""
    daemon = start_daemon(["--log-format", "json"], repo=slow_repo, model="slow")
    before = model_counters(daemon, "slow")
    xs = {k: slow_input(100 + k, 1 + k % 3) for k in range(24)}
    stayers = {k: Client(daemon.port, "/predict", slow_body(xs[k]), tag=f"stay-{k}",
                         request_id=f"stay-{k}") for k in range(0, 24, 2)}
    targets = [stayers[k].run if k in stayers else
               (lambda k=k: leave_after_sending(daemon.port, slow_body(xs[k]), f"leave-{k}",
                                                0.05 * (k % 4)))
               for k in range(24)]
    run_threads(targets, timeout=120)
    for k, c in stayers.items():
        check_doubled(c.result, xs[k])
    ids = [f"stay-{k}" for k in stayers] + [f"leave-{k}" for k in range(1, 24, 2)]
    lines = request_lines(daemon, ids, timeout=30)
    assert len(lines) == len(ids), f"access-log lines missing: {sorted(set(ids) - set(lines))}"
    left = {i: lines[i] for i in ids if i.startswith("leave-")}
    assert all(r["status"] in (200, 499) for r in left.values()), left
    dropped = [i for i, r in left.items() if r["status"] == 499]
    assert all(left[i]["batch"] == 0 for i in dropped), left
    assert dropped, ("12 clients left while ~5 s of work was queued ahead of them, "
                     f"none was dropped: {left}")
    after = model_counters(daemon, "slow")
    ran_rows = sum(1 + k % 3 for k in range(24) if f"leave-{k}" not in dropped)
    assert after["inferences"] - before["inferences"] == ran_rows, \
        "samples run != samples of the requests that were not dropped"
    s = scrape(daemon)
    assert metric(s, "inferd_requests_total", model="slow", status="499") == len(dropped)
    assert after["pending"] == 0
    x = slow_input(99, 2)
    check_doubled(Client(daemon.port, "/predict", slow_body(x), tag="after").run(), x)
