"""Graceful drain: SIGTERM while requests are queued on the slow model
(models/make_slow_model.py: y = 2x, each forward a roughly fixed time,
max_batch_size 4, so K one-sample requests need K/4 forwards one after the
other). Readiness turns 503 at once, new connections are refused, every
request already accepted gets its real answer, and the process exits 0;
with a drain timeout shorter than the queued work, what is still queued
gets 503 instead, and nothing hangs or is reset.
"""
import signal
import threading
import time

import numpy as np
import pytest

from support import assert_error
from loadtools import (SLOW_MARGIN_FACTOR, SLOW_TARGET_MS, SLOWER_FACTOR, Client, KeepAlive,
                       add_slow, as_response, join_clients, log_records, model_counters, new_connection_ready_status,
                       slow_body, slow_input)


@pytest.fixture(scope="module")
def slower_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("drain_repo")
    add_slow(repo, factor=SLOWER_FACTOR)
    return repo


@pytest.fixture(scope="module")
def slowest_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("drain_cut_repo")
    add_slow(repo, factor=SLOW_MARGIN_FACTOR)
    return repo


def load_and_wait_accepted(daemon, prefix, k):
    """Open k connections, then send one one-sample request on each, all at
    once; return when every request has been written and the server has
    taken them in (queued, running or done: pending + run >= k - 4, the
    most one running batch can hold, and then 0.3 s more).
    Returns (inputs, clients, threads)."""
    xs = [slow_input(i, 1) for i in range(k)]
    clients = [Client(daemon.port, "/predict", slow_body(x), tag=f"{prefix}-{i}",
                      request_id=f"{prefix}-{i}") for i, x in enumerate(xs)]
    for c in clients:
        c.connect()
        assert c.result.error is None, f"connect: {c.result.error!r}"

    def run(c):
        c.send()
        c.receive()

    threads = [threading.Thread(target=run, args=(c,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    for c in clients:
        assert c.sent.wait(max(0.0, deadline - time.monotonic())), "a request was never sent"
        assert c.result.error is None, f"{c.result.tag}: {c.result.error!r}"
    while True:
        counters = model_counters(daemon, "slow")
        if counters["pending"] + counters["inferences"] >= k - 4:
            break
        early = [c.result for c in clients if c.result.t_done is not None and
                 c.result.status != 200]
        assert not early, f"answered before SIGTERM: {early[:3]}\n{daemon.describe()}"
        assert time.monotonic() < deadline, \
            f"requests never reached the queue: {counters}\n{daemon.describe()}"
        time.sleep(0.02)
    time.sleep(0.3)
    return xs, clients, threads


def check_doubled(result, x):
    assert result.error is None, f"{result.tag}: accepted but no answer: {result.error!r}"
    assert result.status == 200, f"{result}"
    assert result.json["shape"] == list(x.shape), f"{result}"
    assert np.array_equal(np.asarray(result.json["outputs"], dtype=np.float32), x * 2), \
        f"{result.tag}: outputs {result.json['outputs']} are not 2 * {x.tolist()}"


def test_sigterm_answers_every_accepted_request(start_daemon, slower_repo):
    drain_timeout_s = 30
    k = 16
    daemon = start_daemon(["--drain-timeout-s", str(drain_timeout_s), "--log-format", "json"],
                          repo=slower_repo, model="slow")
    health = KeepAlive(daemon.port)
    try:
        status, headers, _ = health.get("/v2/health/ready")
        assert status == 200 and headers.get("connection", "").lower() != "close"
        xs, clients, threads = load_and_wait_accepted(daemon, "drain", k)
        pending = model_counters(daemon, "slow")["pending"]
        assert pending >= 1, "everything ran before SIGTERM: the drain would have no queued work"

        t_term = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        # Readiness turns 503 at once, seen on the health checker's open
        # connection (the signal takes a moment to arrive: poll, bounded).
        ready_statuses = []
        while True:
            try:
                status, headers, _ = health.get("/v2/health/ready")
            except (OSError, ValueError) as e:
                raise AssertionError(
                    f"the health checker's connection failed during the drain ({e!r}) "
                    f"after readiness answered {ready_statuses}\n{daemon.describe()}") from None
            ready_statuses.append(status)
            if status == 503:
                t_unready = time.monotonic()
                break
            assert status == 200, ready_statuses
            assert time.monotonic() - t_term < 2, \
                f"readiness still {ready_statuses[-1]} 2 s after SIGTERM"
            time.sleep(0.02)
        assert headers.get("retry-after"), "503 while draining without Retry-After"
        # A new connection is refused (or at least told 503).
        fresh = new_connection_ready_status(daemon.port)
        assert fresh in ("refused", 503), \
            f"a new connection during the drain got {fresh!r}, not refused or 503"
    finally:
        health.close()

    results = join_clients(clients, threads, timeout=drain_timeout_s + 10)
    for r, x in zip(results, xs):
        check_doubled(r, x)
    t_last = max(r.t_done for r in results)
    assert t_unready < t_last, "readiness only turned 503 after every request was answered"
    # Replies sent during the drain tell the client to close.
    during = [r for r in results if r.t_done > t_unready + 0.1]
    assert during and all(r.headers.get("connection", "").lower() == "close" for r in during), \
        f"replies during the drain without 'Connection: close': " \
        f"{[(r.tag, r.headers.get('connection')) for r in during]}"

    status = daemon.wait_exit(timeout=drain_timeout_s + 10)
    elapsed = time.monotonic() - t_term
    assert status == 0, f"exit status {status} after SIGTERM\n{daemon.describe()}"
    assert elapsed < drain_timeout_s, f"exit {elapsed:.1f} s after SIGTERM"
    records = log_records(daemon)
    stopped = [r for r in records if str(r.get("msg", "")).startswith("stopped after")]
    assert stopped and "timed out" not in stopped[-1]["msg"], \
        f"the drain did not finish cleanly: {stopped}\n{daemon.describe()}"
    assert not [r for r in records if "drain timeout" in str(r.get("msg", ""))]
    ok = [r for r in records if r.get("msg") == "request" and
          str(r.get("request_id", "")).startswith("drain-")]
    assert sorted(r["status"] for r in ok) == [200] * k, ok


def test_drain_timeout_answers_the_rest_503(start_daemon, slowest_repo):
    drain_timeout_s = 1
    k = 32
    daemon = start_daemon(["--drain-timeout-s", str(drain_timeout_s), "--log-format", "json"],
                          repo=slowest_repo, model="slow")
    xs, clients, threads = load_and_wait_accepted(daemon, "cut", k)
    before = model_counters(daemon, "slow")
    t_term = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    results = join_clients(clients, threads, timeout=drain_timeout_s + 30)
    status = daemon.wait_exit(timeout=drain_timeout_s + 30)
    elapsed = time.monotonic() - t_term
    assert status == 0, f"exit status {status} after SIGTERM\n{daemon.describe()}"

    errors = [r for r in results if r.error is not None]
    assert not errors, f"accepted requests without an answer (reset/closed): {errors}"
    ok = [i for i, r in enumerate(results) if r.status == 200]
    dropped = [i for i, r in enumerate(results) if r.status == 503]
    assert len(ok) + len(dropped) == k, \
        f"answers other than 200/503: {[r for r in results if r.status not in (200, 503)]}"
    for i in ok:
        check_doubled(results[i], xs[i])
    for i in dropped:
        assert_error(as_response(results[i]), 503)
        assert results[i].headers.get("retry-after"), f"{results[i]}: 503 without Retry-After"
    records = log_records(daemon)
    forwards_ms = [r["compute_ms"] for r in records
                   if r.get("msg") == "request" and r.get("status") == 200]
    model_s = SLOW_MARGIN_FACTOR * SLOW_TARGET_MS / 1000
    assert dropped, (f"{before['pending']:.0f} requests queued behind a ~{model_s:.1f} s model "
                     f"(forwards took {sorted(set(forwards_ms))} ms) and a {drain_timeout_s} s "
                     f"drain, yet all ran: {results}\n{daemon.describe()}")
    # Exits once the batch running at the timeout is done (it is not cut).
    bound = drain_timeout_s + max(forwards_ms, default=0) / 1000 + 3
    assert elapsed < bound, f"exit {elapsed:.1f} s after SIGTERM (bound {bound:.1f} s)"
    timeouts = [r for r in records if "drain timeout" in str(r.get("msg", ""))]
    assert timeouts and f" {len(dropped)} " in timeouts[-1]["msg"], \
        f"{len(dropped)} answered 503; the log says {timeouts}"
    lines = {r["request_id"]: r for r in records if r.get("msg") == "request"}
    for i in dropped:
        line = lines[results[i].tag]
        assert line["status"] == 503 and line["batch"] == 0, line
