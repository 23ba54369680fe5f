#!/usr/bin/env python3
"""The OPT benchmark harness of issue #6: colossal-opt beside PyTorch on one GPU.

Three steps on two machines (the compiler links LLVM and stays here; plans
and the MLIR-free runtime travel):

  bench/opt_bench.py prepare DIR [--sizes 125m,350m,...] [--budgets free,24GiB,6GiB] [-- FLAGS]
      here: compiles every (size, budget) training plan of the weight-free
      OPT graphs in ../shared/models at batch 8 x seq 1024, bf16, with
      --report-json (planned peak, predicted step time); a size that does
      not fit a budget is recorded with the compiler's message. Copies
      colossal-run from the CUDA build, writes a random token stream and
      DIR/manifest.json. DIR must be carried to the GPU machine (add it to
      .git/info/exclude and name it in `carry`).

  bench/opt_bench.py run DIR OUT.jsonl [--only colossal|pytorch] [--sizes ...]
      there: runs every plan with `colossal-run --device cuda --init random`
      and PyTorch (bench/torch_opt.py) on the same model shapes, unconstrained
      and under each budget as a memory cap, plus PyTorch's simple
      CPU-offloaded AdamW under the caps. One JSON object per row in OUT.

  bench/opt_bench.py report DIR OUT.jsonl... [--md docs/results.md]
      here: joins the plans' reports with the measured rows into
      docs/results.md (tables of tokens/s, TFLOP/s, predicted vs measured step
      time, planned vs measured peak, all as ratios) and docs/img/
      tokens-vs-budget.svg.

Measured device memory on the colossal side is sampled with nvidia-smi
(memory.used of the GPU, which includes the CUDA context and cuBLASLt
workspace) every 50 ms while the run lasts, minus the reading before the run.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(os.path.dirname(ROOT), "shared", "models")
SIZES = ["125m", "350m", "1.3b", "2.7b", "6.7b"]
BATCH, SEQ = 8, 1024
GIB = 2**30


def parse_budget(text):
    if text == "free":
        return None
    units = {"GiB": GIB, "MiB": 2**20}
    for u, m in units.items():
        if text.endswith(u):
            return int(float(text[: -len(u)]) * m)
    raise SystemExit(f"opt_bench: budget '{text}' must be 'free' or end in GiB/MiB")


def log(msg):
    print(f"[opt-bench] {msg}", flush=True)


# ---- prepare (here) ------------------------------------------------------

def prepare(args):
    out = os.path.abspath(args.dir)
    os.makedirs(os.path.join(out, "plans"), exist_ok=True)
    opt = args.colossal_opt
    run_bin = args.colossal_run
    for path in (opt, run_bin):
        if not os.path.exists(path):
            raise SystemExit(f"opt_bench: {path} not found: build it first (docs/cuda.md)")
    os.makedirs(os.path.join(out, "bin"), exist_ok=True)
    shutil.copy2(run_bin, os.path.join(out, "bin", "colossal-run"))
    shutil.copy2(os.path.join(HERE, "torch_opt.py"), os.path.join(out, "torch_opt.py"))
    # Random tokens below the vocabulary, 64 windows' worth.
    import random
    rng = random.Random(0)
    vocab = 50272
    n = 64 * (SEQ + 1)
    with open(os.path.join(out, "tokens.bin"), "wb") as f:
        f.write(b"".join(rng.randrange(vocab).to_bytes(2, "little") for _ in range(n)))
    rows = []
    for size in args.sizes.split(","):
        model = os.path.join(MODELS, f"opt-{size}-noweights.dynamo.dynamic.onnx")
        shape = os.path.join(MODELS, f"opt-{size}-noweights.dynamo.dynamic.json")
        shutil.copy2(shape, os.path.join(out, "plans", f"opt-{size}.json"))
        for budget in args.budgets.split(","):
            name = f"opt-{size}-{budget}"
            plan = os.path.join(out, "plans", name + ".cplan")
            report = os.path.join(out, "plans", name + ".report.json")
            cmd = [opt, "compile", model, "--shape", f"input_ids={BATCH}x{SEQ}",
                   "--shape", f"labels={BATCH}x{SEQ}", "--precision", "bf16",
                   "-o", plan, "--report-json", report]
            if budget != "free":
                cmd += ["--budget", budget]
            cmd += args.extra
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True)
            dt = time.perf_counter() - t0
            row = {"name": name, "size": size, "budget": budget,
                   "budget_bytes": parse_budget(budget),
                   "compile_s": dt, "command": " ".join(os.path.relpath(c, ROOT) if os.path.isabs(c) else c for c in cmd)}
            if p.returncode == 0:
                row["plan"] = os.path.relpath(plan, out)
                with open(report) as f:
                    row["report"] = json.load(f)
                log(f"{name}: planned device peak {row['report']['device']['planned_peak_bytes'] / GIB:.2f} GiB, "
                    f"predicted {row['report']['predicted_step_s'] * 1e3:.0f} ms/step ({dt:.1f} s)")
            else:
                err = [l for l in p.stderr.splitlines() if "error" in l]
                row["error"] = err[0] if err else p.stderr.strip()[:500]
                log(f"{name}: does not compile: {row['error'][:160]}")
            rows.append(row)
    manifest = {"batch": BATCH, "seq": SEQ, "precision": "bf16", "rows": rows,
                "prepared": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip()}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    log(f"wrote {out}/manifest.json ({len(rows)} plans)")


# ---- run (on the GPU machine) --------------------------------------------

class MemSampler:
    """Samples the GPU's memory.used (MiB) with nvidia-smi while a run lasts."""

    def __init__(self):
        self.peak = 0
        self.stop = threading.Event()

    @staticmethod
    def used_mib():
        p = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                            "-i", "0"], capture_output=True, text=True)
        try:
            return int(p.stdout.strip().splitlines()[0])
        except (ValueError, IndexError):
            return 0

    def _loop(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.used_mib())
            time.sleep(0.05)

    def __enter__(self):
        self.base = self.used_mib()
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.t.join()


def run_colossal(dirpath, row, steps, warmup, timeout):
    plan = os.path.join(dirpath, row["plan"])
    metrics = os.path.join("/tmp", row["name"] + ".metrics.jsonl")
    cmd = [os.path.join(dirpath, "bin", "colossal-run"), plan, "--device", "cuda",
           "--init", "random", "--data", os.path.join(dirpath, "tokens.bin"),
           "--steps", str(warmup + steps), "--metrics", metrics]
    # The limit covers start-up (random init, pinned host memory) plus the
    # steps at three times their predicted time: a plan predicted slow
    # (OPT-6.7b offloaded, ~2.8 s a step) gets the room it needs. Pinning
    # and drawing the host arena take about a second per GB (OPT-6.7b under
    # 24 GiB: 84 GB, prepared in 59 s on the H200 machine, session 5).
    report = row.get("report", {})
    predicted = report.get("predicted_step_s", 0.0)
    host_bytes = report.get("host", {}).get("planned_peak_bytes", 0)
    timeout = int(timeout + 3 * (warmup + steps) * predicted + host_bytes / 1e9)
    res = {"framework": "colossal", "name": row["name"], "size": row["size"],
           "budget": row["budget"], "command": " ".join(cmd[1:])}
    # The backend's cudaMalloc report: the device arena it allocated, which
    # must equal the plan's planned peak (the arena size), and the fixed
    # parts beside it (scratch, cuBLASLt workspace).
    env = dict(os.environ, COLOSSAL_CUDA_REPORT_MALLOC="1")
    try:
        with MemSampler() as mem:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        res.update(status="timeout", timeout_s=timeout)
        return res
    res["sampled_peak_bytes"] = (mem.peak - mem.base) * 2**20
    m = re.search(r"cudaMalloc (\d+) bytes: arenas (\d+), scratch (\d+), cuBLASLt workspace (\d+)",
                  p.stderr)
    if m:
        res["malloc_total_bytes"], res["malloc_arena_bytes"] = int(m.group(1)), int(m.group(2))
        res["malloc_scratch_bytes"] = int(m.group(3))
    if p.returncode != 0:
        res.update(status="error", message=(p.stderr.strip() or p.stdout.strip())[-500:])
        return res
    steps_s = []
    with open(metrics) as f:
        for line in f:
            steps_s.append(json.loads(line)["step_s"])
    timed = steps_s[warmup:] or steps_s
    med = statistics.median(timed)
    res.update(status="ok", step_s=timed, median_step_s=med, tokens_per_s=BATCH * SEQ / med,
               stdout_tail=p.stdout.strip().splitlines()[-3:])
    return res


def run_torch(dirpath, size, mode, cap_gib, steps, warmup, timeout):
    cmd = [sys.executable, os.path.join(dirpath, "torch_opt.py"), "--shape",
           os.path.join(dirpath, "plans", f"opt-{size}.json"), "--size", size, "--mode", mode,
           "--steps", str(steps), "--warmup", str(warmup)]
    if cap_gib:
        cmd += ["--mem-cap-gib", str(cap_gib)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"framework": "pytorch", "size": size, "mode": mode, "mem_cap_gib": cap_gib,
                "status": "timeout"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"framework": "pytorch", "size": size, "mode": mode, "mem_cap_gib": cap_gib,
            "status": "error", "message": p.stderr.strip()[-500:]}


def run(args):
    dirpath = os.path.abspath(args.dir)
    with open(os.path.join(dirpath, "manifest.json")) as f:
        manifest = json.load(f)
    sizes = args.sizes.split(",") if args.sizes else None
    budgets = args.budgets.split(",") if args.budgets else None
    out = open(args.out, "a")

    def emit(row):
        row["machine"] = machine
        out.write(json.dumps(row) + "\n")
        out.flush()
        keys = ("framework", "mode", "name", "size", "budget", "mem_cap_gib", "status", "tokens_per_s")
        log(" ".join(f"{k}={row[k]:.0f}" if isinstance(row.get(k), float) else f"{k}={row[k]}"
                     for k in keys if row.get(k) is not None))

    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
    machine = {"gpu": smi, "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "env": {k: v for k, v in os.environ.items() if k.startswith("COLOSSAL_")}}
    for row in manifest["rows"]:
        if sizes and row["size"] not in sizes:
            continue
        if budgets and row["budget"] not in budgets:
            continue
        if args.only in (None, "colossal") and "plan" in row:
            emit(run_colossal(dirpath, row, args.steps, args.warmup, args.timeout))
        if args.only in (None, "pytorch"):
            cap = None if row["budget"] == "free" else parse_budget(row["budget"]) / GIB
            emit(run_torch(dirpath, row["size"], "plain", cap, args.steps, args.warmup, args.timeout))
            if cap:
                emit(run_torch(dirpath, row["size"], "offload", cap, args.steps, args.warmup, args.timeout))
    out.close()


# ---- report (here) -------------------------------------------------------

def fmt_bytes(b):
    return "-" if b is None else f"{b / GIB:.2f} GiB"


def svg_plot(series, title, path):
    """A small self-contained SVG line chart: series = {label: [(x GiB, y tok/s)]}."""
    w, h, ml, mb, mt, mr = 640, 360, 70, 50, 30, 160
    xs = [x for pts in series.values() for x, _ in pts] or [1]
    ys = [y for pts in series.values() for _, y in pts] or [1]
    xmax, ymax = max(xs) * 1.05, max(ys) * 1.1
    sx = lambda x: ml + (w - ml - mr) * x / xmax
    sy = lambda y: h - mb - (h - mb - mt) * y / ymax
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="18" text-anchor="middle" font-size="14">{title}</text>',
             f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
             f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
             f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">device memory budget (GiB)</text>',
             f'<text x="16" y="{h / 2}" transform="rotate(-90 16 {h / 2})" text-anchor="middle">tokens/s</text>']
    for i in range(6):
        xv, yv = xmax * i / 5, ymax * i / 5
        parts.append(f'<text x="{sx(xv)}" y="{h - mb + 16}" text-anchor="middle">{xv:.0f}</text>')
        parts.append(f'<text x="{ml - 6}" y="{sy(yv) + 4}" text-anchor="end">{yv / 1000:.0f}k</text>')
    for k, (label, pts) in enumerate(series.items()):
        c = colors[k % len(colors)]
        pts = sorted(pts)
        if len(pts) > 1:
            parts.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
                         % (c, " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)))
        for x, y in pts:
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="4" fill="{c}"/>')
        parts.append(f'<rect x="{w - mr + 12}" y="{mt + 18 * k}" width="12" height="12" fill="{c}"/>')
        parts.append(f'<text x="{w - mr + 30}" y="{mt + 18 * k + 11}">{label}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def report(args):
    with open(os.path.join(args.dir, "manifest.json")) as f:
        manifest = json.load(f)
    measured = []
    for path in args.results:
        with open(path) as f:
            measured += [json.loads(l) for l in f if l.strip()]
    col = {r["name"]: r for r in measured if r["framework"] == "colossal"}
    # Where several runs measured the same PyTorch row, the fastest is shown
    # (the strongest baseline; short runs of small models can still be
    # warming up).
    torch_rows = {}
    for r in measured:
        if r["framework"] == "pytorch":
            key = (r["size"], r.get("mode"), r.get("mem_cap_gib"))
            old = torch_rows.get(key)
            if (old is None or (r.get("status") == "ok" and (old.get("status") != "ok" or
                                r["tokens_per_s"] > old["tokens_per_s"]))):
                torch_rows[key] = r
    machine = next((r["machine"] for r in measured if "machine" in r), {})
    runs = sorted({(r["machine"]["date"], json.dumps(r["machine"].get("env", {})), r["framework"])
                   for r in measured if "machine" in r})
    tokens = BATCH * SEQ
    lines = ["# Results: colossal-opt beside PyTorch on one GPU", "",
             "Generated by `bench/opt_bench.py report` from the rows `bench/opt_bench.py run` measured;",
             "do not edit by hand. Plans compiled at commit "
             f"{manifest.get('commit', '?')} ({manifest.get('prepared', '?')}).", "",
             f"Machine: {machine.get('gpu', '?')}, {machine.get('cpus', '?')} CPUs. Rows measured in these runs:", ""]
    lines += [f"- {date}: {fw}" + (f" (environment {env})" if env != "{}" else "") for date, env, fw in runs]
    lines += [""] + [f"Note: {n}" for n in args.note] + ([""] if args.note else []) + [
             f"Every row: OPT (weight-free graphs of ../shared/models, random init), batch {BATCH} x seq {SEQ}, "
             "bf16 with fp32 master weights and AdamW. TFLOP/s = 6 N tokens / step time. The allocated arena",
             "is the device arena the CUDA backend allocated (its cudaMalloc report, COLOSSAL_CUDA_REPORT_MALLOC),",
             "against the plan's planned peak; the measured peak is nvidia-smi's memory.used sampled every 50 ms,",
             "less its reading before the run: it includes the CUDA context, scratch and the cuBLASLt workspace",
             "that the planned peak does not.", ""]
    for budget in manifest["rows"] and sorted({r["budget"] for r in manifest["rows"]},
                                              key=lambda b: -(parse_budget(b) or 1e30)):
        lines += [f"## Budget: {budget}", "",
                  "| OPT | params | colossal tok/s | TFLOP/s | PyTorch tok/s | ratio | PyTorch offload tok/s | "
                  "predicted / measured step | planned peak | allocated arena | measured peak (sampled) | PyTorch peak |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for row in manifest["rows"]:
            if row["budget"] != budget:
                continue
            size = row["size"]
            cap = None if budget == "free" else parse_budget(budget) / GIB
            t = torch_rows.get((size, "plain", cap))
            to = torch_rows.get((size, "offload", cap))
            c = col.get(row["name"])
            with open(os.path.join(args.dir, "plans", f"opt-{size}.json")) as f:
                params = json.load(f)["num_params"]
            cells = [size, f"{params / 1e6:.0f}M" if params else "-"]
            if "error" in row:
                # The compiler's first clause: "the plan needs X of device
                # memory but the budget is Y (over by Z)".
                why = row["error"].split("error: ")[-1].split(":")[0]
                cells += ["does not fit: " + why, "-"]
            elif c and c.get("status") == "ok":
                tf = 6 * params * c["tokens_per_s"] / 1e12 if params else None
                cells += [f"{c['tokens_per_s']:.0f}", f"{tf:.0f}" if tf else "-"]
            else:
                cells += [(c or {}).get("status", "not run"), "-"]
            tok_t = t["tokens_per_s"] if t and t.get("status") == "ok" else None
            cells.append(f"{tok_t:.0f}" if tok_t else (t or {}).get("status", "not run"))
            if tok_t and c and c.get("status") == "ok":
                cells.append(f"{c['tokens_per_s'] / tok_t:.2f}x")
            else:
                cells.append("-")
            cells.append(f"{to['tokens_per_s']:.0f}" if to and to.get("status") == "ok"
                         else ((to or {}).get("status", "-") if cap else "-"))
            if c and c.get("status") == "ok" and "report" in row:
                cells.append(f"{row['report']['predicted_step_s'] * 1e3:.0f} / {c['median_step_s'] * 1e3:.0f} ms "
                             f"({row['report']['predicted_step_s'] / c['median_step_s']:.2f})")
            else:
                cells.append("-")
            cells.append(fmt_bytes(row["report"]["device"]["planned_peak_bytes"]) if "report" in row else "-")
            if c and c.get("malloc_arena_bytes") is not None and "report" in row:
                planned = row["report"]["device"]["planned_peak_bytes"]
                got = c["malloc_arena_bytes"]
                cells.append("= planned" if got == planned else f"{fmt_bytes(got)} ({got - planned:+d} B)")
            else:
                cells.append("-")
            cells.append(fmt_bytes(c.get("sampled_peak_bytes")) if c else "-")
            cells.append(fmt_bytes(t.get("peak_bytes")) if t and t.get("status") == "ok" else "-")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    # tokens/s against budget for the plot
    img = os.path.join(os.path.dirname(os.path.abspath(args.md)), "img", "tokens-vs-budget.svg")
    series = {}
    for size in ("1.3b", "6.7b"):
        for row in manifest["rows"]:
            if row["size"] != size:
                continue
            x = (row["budget_bytes"] or 0) / GIB or 141
            c = col.get(row["name"])
            if c and c.get("status") == "ok":
                series.setdefault(f"colossal {size}", []).append((x, c["tokens_per_s"]))
            cap = None if row["budget"] == "free" else x
            t = torch_rows.get((size, "plain", cap))
            if t and t.get("status") == "ok":
                series.setdefault(f"PyTorch {size}", []).append((x, t["tokens_per_s"]))
    if series:
        os.makedirs(os.path.dirname(img), exist_ok=True)
        svg_plot(series, "OPT training throughput against the device budget (H200)", img)
        lines += ["## Tokens/s against budget", "", "![tokens/s against budget](img/tokens-vs-budget.svg)",
                  "", "An unconstrained run is drawn at 141 GiB (the whole H200).", ""]
    lines += ["## Commands", "", "```", "bench/opt_bench.py prepare DIR            # here",
              "bench/opt_bench.py run DIR OUT.jsonl        # on the GPU machine (carry DIR)",
              "bench/opt_bench.py report DIR OUT.jsonl...  # here", "```", "",
              "The rows behind this page: " + ", ".join(f"`{os.path.relpath(p, ROOT)}`" for p in args.results)
              + f", with the plans' compile reports in `{os.path.relpath(os.path.join(args.dir, 'manifest.json'), ROOT)}`.",
              ""]
    os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
    with open(args.md, "w") as f:
        f.write("\n".join(lines))
    log(f"wrote {args.md}" + (f" and {img}" if series else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("dir")
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--budgets", default="free,24GiB,6GiB")
    p.add_argument("--colossal-opt", default=os.path.join(ROOT, "build", "bin", "colossal-opt"))
    p.add_argument("--colossal-run", default=os.path.join(ROOT, "build-cuda", "bin", "colossal-run"))

    r = sub.add_parser("run")
    r.add_argument("dir")
    r.add_argument("out")
    r.add_argument("--only", choices=["colossal", "pytorch"])
    r.add_argument("--sizes", default="")
    r.add_argument("--budgets", default="", help="run only these budgets (free,24GiB,...)")
    r.add_argument("--steps", type=int, default=5)
    r.add_argument("--warmup", type=int, default=2)
    r.add_argument("--timeout", type=int, default=240)
    q = sub.add_parser("report")
    q.add_argument("dir")
    q.add_argument("results", nargs="+")
    q.add_argument("--md", default=os.path.join(ROOT, "docs", "results.md"))
    q.add_argument("--note", action="append", default=[], help="a line printed under the header")
    # Everything after "--" goes to colossal-opt compile (prepare), e.g.
    # "-- --device-profile devices/h200-fitted.json".
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    args = ap.parse_args(argv)
    args.extra = extra
    {"prepare": prepare, "run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
