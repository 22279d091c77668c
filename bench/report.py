#!/usr/bin/python3
"""Turn bench/out/results.csv into a markdown table, a target check and a
gnuplot PNG. Called by bench/run.sh; can be rerun on its own:

    /usr/bin/python3 bench/report.py bench/out

Writes OUT/table.md and OUT/throughput.png (via OUT/throughput.gp) and
prints the table to stdout.
"""
import csv
import os
import shutil
import subprocess
import sys

TARGET_C = 32            # concurrency the targets are stated at
TARGET_X_SEED = 4.0      # inferd req/s >= 4x seed req/s
TARGET_RAW_FRAC = 0.60   # inferd req/s >= 60% of the raw batched ceiling


def fnum(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def load(out):
    http, raw = [], []
    with open(os.path.join(out, "results.csv")) as f:
        for r in csv.DictReader(f):
            if r["stack"] == "raw":
                raw.append(r)
            else:
                http.append(r)
    return http, raw


def series_names(http):
    names = []
    for r in http:
        name = r["stack"] if r["config"] in ("", "default") else f"{r['stack']} ({r['config']})"
        if name not in names:
            names.append(name)
    return names


def name_of(r):
    return r["stack"] if r["config"] in ("", "default") else f"{r['stack']} ({r['config']})"


def fmt(v, nd=1):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{nd}f}"


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "out")
    http, raw = load(out)
    names = series_names(http)
    # With BENCH_ROUNDS > 1 a point was measured several times: keep the
    # round with the most req/s (noise on a shared machine only slows down).
    by = {}
    for r in http:
        k = (name_of(r), int(r["concurrency"]))
        if k not in by or (fnum(r["rps"]) or 0) > (fnum(by[k]["rps"]) or 0):
            by[k] = r
    rounds = len({r.get("round") or "1" for r in http})
    concs = sorted({int(r["concurrency"]) for r in http})

    # The ceiling is in-process: one process, 1 or 2 intra-op threads (specs
    # "1", "2", "2p"). "2x1" (two processes) is reported beside it.
    inproc = [r for r in raw if "x" not in r["config"].split()[1]]
    multi = [r for r in raw if "x" in r["config"].split()[1]]
    raw_best = max(inproc or raw, key=lambda r: fnum(r["rps"]) or 0) if raw else None
    ceiling = fnum(raw_best["rps"]) if raw_best else None
    multi_best = max(multi, key=lambda r: fnum(r["rps"]) or 0) if multi else None
    multi_ceiling = fnum(multi_best["rps"]) if multi_best else None
    raw_b1 = [r for r in inproc if r["config"].startswith("batch=1 ")]
    raw_b1_best = max((fnum(r["rps"]) for r in raw_b1), default=None)

    lines = []
    if rounds > 1:
        lines.append(f"Best of {rounds} rounds per point (the round with the most req/s).")
        lines.append("")
    lines.append("| stack | conc | req/s | p50 ms | p99 ms | x seed req/s | % raw ceiling | server CPU ms/req | errors |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in names:
        for c in concs:
            r = by.get((n, c))
            if r is None:
                continue
            rps = fnum(r["rps"])
            seed = by.get(("seed", c))
            xs = rps / fnum(seed["rps"]) if seed and n != "seed" and fnum(seed["rps"]) else None
            pr = 100.0 * rps / ceiling if ceiling else None
            errs = sum(int(fnum(r[k]) or 0) for k in ("non2xx", "socket_errors", "timeouts"))
            lines.append(f"| {n} | {c} | {fmt(rps)} | {fmt(fnum(r['p50_ms']), 2)} | "
                         f"{fmt(fnum(r['p99_ms']), 2)} | {fmt(xs, 2) if xs else '-'} | "
                         f"{fmt(pr) + '%' if pr is not None else '-'} | "
                         f"{fmt(fnum(r['cpu_ms_per_req']), 3)} | {errs} |")
    lines.append("")
    if raw:
        # config is "batch=B threads=T [before|after]"
        cells = {}
        passes, specs = [], []
        for r in raw:
            parts = r["config"].split()
            b, t = int(parts[0].split("=")[1]), parts[1].split("=")[1]
            p = parts[2] if len(parts) > 2 else "run"
            if p not in passes:
                passes.append(p)
            if t not in specs:
                specs.append(t)
            cells[(b, t, p)] = r
        lines.append("Raw in-process libtorch forward (bench/raw_forward.py), samples/s "
                     "(ms per batch), runs: " + ", ".join(passes) + ". threads: N = "
                     "set_num_threads(N); Np = same with OMP_WAIT_POLICY=passive; 2x1 = two "
                     "1-thread processes at once, summed.")
        lines.append("")
        lines.append("| batch | threads | " + " | ".join(passes) + " |")
        lines.append("|---:|---:|" + "---:|" * len(passes))
        for b, t in sorted({(b, t) for b, t, _ in cells}, key=lambda bt: (specs.index(bt[1]), bt[0])):
            vals = []
            for p in passes:
                r = cells.get((b, t, p))
                vals.append(f"{fmt(fnum(r['rps']))} ({fmt(fnum(r['p50_ms']), 2)} ms)" if r else "-")
            lines.append(f"| {b} | {t} | " + " | ".join(vals) + " |")
        lines.append("")
        lines.append(f"Raw batched ceiling (in-process, best of every batch size, 1/2/2p "
                     f"threads and both runs): **{fmt(ceiling)} samples/s** "
                     f"({raw_best['config']}); raw batch-1 best: {fmt(raw_b1_best)} samples/s.")
        if multi_ceiling:
            lines.append(f"Two 1-thread processes at once (2x1), best: {fmt(multi_ceiling)} "
                         f"samples/s ({multi_best['config']}).")
        loads = [r.get("loadavg1") for r in http + raw if r.get("loadavg1")]
        if loads:
            lf = [float(x) for x in loads]
            lines.append(f"1-min load average during the run: {min(lf):.2f} to {max(lf):.2f} "
                         f"(2 cores; per point in results.csv).")
        lines.append("")

    # Targets at TARGET_C: default inferd and the best inferd config.
    seed = by.get(("seed", TARGET_C))
    inferd_names = [n for n in names if n.startswith("inferd")]
    cands = [(n, by[(n, TARGET_C)]) for n in inferd_names if (n, TARGET_C) in by]
    if seed and cands:
        best = max(cands, key=lambda nr: fnum(nr[1]["rps"]))
        check = [("inferd", by[("inferd", TARGET_C)])] if ("inferd", TARGET_C) in by else []
        if best[0] != "inferd":
            check.append(best)
        s_rps, s_p50 = fnum(seed["rps"]), fnum(seed["p50_ms"])
        lines.append(f"Targets at concurrency {TARGET_C} (seed: {fmt(s_rps)} req/s, "
                     f"p50 {fmt(s_p50, 2)} ms):")
        lines.append("")
        lines.append("| inferd config | req/s | x seed (>= 4) | p99 ms (< seed p50) | "
                     "% raw ceiling (>= 60%) |")
        lines.append("|---|---:|---|---|---|")
        for n, r in check:
            rps, p99 = fnum(r["rps"]), fnum(r["p99_ms"])
            xs = rps / s_rps
            ok1 = ("met" if xs >= TARGET_X_SEED else
                   f"NOT met (needs {TARGET_X_SEED * s_rps:.0f} req/s, "
                   f"{TARGET_X_SEED / xs:.2f}x more)")
            ok2 = ("met" if p99 < s_p50 else
                   f"NOT met ({fmt(p99, 2)} vs {fmt(s_p50, 2)} ms)")
            if ceiling:
                fr = rps / ceiling
                ok3 = ("met" if fr >= TARGET_RAW_FRAC else
                       f"NOT met ({100 * fr:.0f}%, needs {TARGET_RAW_FRAC * ceiling:.0f} req/s)")
            else:
                fr, ok3 = None, "no raw run"
            lines.append(f"| {n} | {fmt(rps)} | {xs:.2f}x {ok1} | {fmt(p99, 2)} {ok2} | "
                         f"{(f'{100 * fr:.0f}% ' if fr is not None else '')}{ok3} |")
        lines.append("")
        if multi_ceiling:
            fr = [f"{n} {100 * fnum(r['rps']) / multi_ceiling:.0f}%" for n, r in check]
            lines.append(f"Against the two-process (2x1) figure, {fmt(multi_ceiling)} samples/s, "
                         f"instead: {', '.join(fr)}.")
            lines.append("")
    table = "\n".join(lines)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    plot(out, names, by, concs, ceiling, multi_ceiling)


def plot(out, names, by, concs, ceiling, multi_ceiling=None):
    if not shutil.which("gnuplot"):
        print("# gnuplot not found: no PNG", file=sys.stderr)
        return
    dat = os.path.join(out, "plot.dat")
    with open(dat, "w") as f:
        for n in names:
            f.write(f'# "{n}"\n')
            for c in concs:
                r = by.get((n, c))
                if r:
                    f.write(f"{c} {r['rps']} {r['p50_ms']} {r['p99_ms']}\n")
            f.write("\n\n")
    png = os.path.join(out, "throughput.png")
    gp = os.path.join(out, "throughput.gp")
    xt = ", ".join(f'"{c}" {c}' for c in concs)
    ymax_p99 = max((fnum(r["p99_ms"]) or 1) for r in by.values())
    def style(n):
        return "lw 3 pt 5 lc rgb 'black'" if n == "seed" else "lw 2 pt 7"

    plots_rps = ", ".join(
        f"'{dat}' index {i} using 1:2 with linespoints {style(n)} title '{n}'"
        for i, n in enumerate(names))
    if ceiling:
        plots_rps += (f", {ceiling} with lines dt 2 lw 2 lc rgb 'gray40' "
                      f"title 'raw libtorch, in-process ceiling'")
    if multi_ceiling:
        plots_rps += (f", {multi_ceiling} with lines dt 3 lw 2 lc rgb 'gray60' "
                      f"title 'raw libtorch, two 1-thread processes'")
    plots_p99 = ", ".join(
        f"'{dat}' index {i} using 1:4 with linespoints {style(n)} title '{n}'"
        for i, n in enumerate(names))
    script = f"""set terminal pngcairo size 1500,680 font ',11'
set output '{png}'
set multiplot layout 1,2 title 'inferd vs Flask+gunicorn (seed), Fashion-MNIST CNN, single-sample POST /predict'
set logscale x 2
set xtics ({xt})
set xrange [{min(concs) / 1.4}:{max(concs) * 1.4}]
set xlabel 'concurrent connections (wrk -c)'
set grid
set key below font ',10'
set ylabel 'requests/s'
set yrange [0:*]
set title 'Throughput'
plot {plots_rps}
set logscale y 10
set yrange [*:{max(ymax_p99 * 2, 1)}]
set ylabel 'p99 latency (ms, log)'
set title 'p99 latency'
plot {plots_p99}
unset multiplot
"""
    with open(gp, "w") as f:
        f.write(script)
    res = subprocess.run(["gnuplot", gp], capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        print(f"# gnuplot failed: {res.stderr.strip()}", file=sys.stderr)
    else:
        print(f"PNG: {png}")


if __name__ == "__main__":
    main()
