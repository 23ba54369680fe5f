#!/usr/bin/env python3
"""Real-size OPT training plans checked against the arithmetic (issue #4, item 10).

Compiles the weight-free OPT graphs of ../shared/models (125m ... 6.7b) at
batch 8 x seq 1024, fp32 and bf16, unconstrained, and compares what the
compiler plans with what the model's shape says a training step must hold:

  persistent  fp32: weights 4 B + AdamW m, v 8 B = 12 B/param; bf16 (mixed
              precision): fp32 master weights 4 B + m, v 8 B = 12 B/param.
              The textbook "16 B/param" of mixed-precision AdamW adds a bf16
              weight copy (2 B) and a bf16 gradient (2 B) per parameter;
              with the update fused into the step (train_step) no gradient
              outlives its layer's backward, and the bf16 weight copies are
              made layer by layer (those the backward needs are saved
              activations, 2 B/param at the peak).
  activations per layer, saved from the forward for the backward, in the
              compute dtype (c = 2 B bf16, 4 B fp32), s x b tokens, width h,
              a heads, FFN width f (pre-layer-norm OPT, no dropout):
                layer-norm inputs (2) and outputs (2)      4 c s b h
                q, k, v                                    3 c s b h
                the attention context (out-proj input)       c s b h
                the ReLU output (fc2 input)                  c s b f
                unfused attention: the probabilities       c a s^2 b
                fused attention: its output and lse          c s b h + 4 a s b
              plus the layer's weights in the compute dtype (bf16 casts
              that the input-gradient matmuls read, [out, in] as stored,
              through the matmul's transpose flag): c (4 h^2 + 2 h f)
              (fp32: the weights themselves, not counted again). Before
              colossal-fold-transposes the matmuls read transposed copies
              instead: the same bytes under bf16, but under fp32 another
              4 h^2 x 4 B per layer of saved f32 copies.
  the peak    is at the loss gradient or right after it: everything saved,
              plus the f32 logits (4 B x s b V), whose bytes the loss
              gradient is written over (colossal-lower-to-plan, since
              session 3), plus under bf16 the gradient's bf16 copy (2 B x s
              b V) that the output projection's backward reads, and the
              model's embedding-side activations; or, when it falls later
              (the output projection's backward matmul), the logits are dead
              and the saved activations are the layers' alone.

Writes docs/real-size.md (the table, the commands, the date) unless --print.
"""

import argparse
import json
import os
import re
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODELS = os.path.join(os.path.dirname(ROOT), "shared", "models")
SIZES = ["125m", "350m", "1.3b", "2.7b", "6.7b"]
B, S = 8, 1024
GIB = 2**30


def compile_one(opt, size, precision, outdir):
    model = os.path.join(MODELS, f"opt-{size}-noweights.dynamo.dynamic.onnx")
    plan = os.path.join(outdir, f"opt-{size}-{precision}.cplan")
    report = plan + ".json"
    mlir = plan + ".mlir"
    cmd = [opt, "compile", model, "--shape", f"input_ids={B}x{S}", "--shape", f"labels={B}x{S}",
           "--precision", precision, "-o", plan, "--report-json", report, "--emit-plan", mlir, "--quiet"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    dt = time.perf_counter() - t0
    with open(report) as f:
        rep = json.load(f)
    with open(mlir) as f:
        fused = re.search(r'cplan\.kernel "attention"', f.read()) is not None
    os.remove(mlir)
    return rep, dt, fused, " ".join([os.path.basename(opt)] + cmd[1:3] + cmd[3:9])


def arithmetic(shape, precision, fused):
    L, h, a, f, V = shape["layers"], shape["hidden"], shape["heads"], shape["ffn"], shape["vocab"]
    P = shape["num_params"]
    c = 2 if precision == "bf16" else 4
    sb = S * B
    per_layer = 4 * c * sb * h + 3 * c * sb * h + c * sb * h + c * sb * f
    per_layer += (c * sb * h + 4 * a * sb) if fused else c * a * S * S * B
    weights_c = c * (4 * h * h + 2 * h * f) if precision == "bf16" else 0
    return {
        "persistent": 12 * P,
        "saved_per_layer": per_layer + weights_c,
        "saved_layers": L * (per_layer + weights_c),
        "logits": 4 * sb * V,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--colossal-opt", default=os.path.join(ROOT, "build", "bin", "colossal-opt"))
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "real-size.md"))
    ap.add_argument("--print", action="store_true", help="print the table, write nothing")
    ap.add_argument("--workdir", default="/tmp/colossal-real-size")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    rows = []
    for size in args.sizes.split(","):
        with open(os.path.join(MODELS, f"opt-{size}-noweights.dynamo.dynamic.json")) as f:
            shape = json.load(f)
        for precision in ("fp32", "bf16"):
            rep, dt, fused, cmd = compile_one(args.colossal_opt, size, precision, args.workdir)
            ar = arithmetic(shape, precision, fused)
            cls = rep["device"]["by_class_at_peak"]
            persistent = cls["weights"] + cls["optimizer_state"]
            rows.append({
                "size": size, "precision": precision, "params": shape["num_params"],
                "fused": fused, "compile_s": dt, "cmd": cmd,
                "peak": rep["device"]["planned_peak_bytes"],
                "bound": rep["device"]["lower_bound_bytes"],
                "persistent": persistent, "persistent_expected": ar["persistent"],
                "saved": cls["saved_activations"], "temporaries": cls["temporaries"],
                "saved_layers_expected": ar["saved_layers"], "logits": ar["logits"],
                # The f32 logits are saved until the loss gradient, which is
                # written over them and cast to bf16 next.
                "saved_expected": ar["saved_layers"]
                + (ar["logits"] if rep["device"]["peak_op"] in ("softmax_cross_entropy_grad", "cast")
                   else 0),
                "grad_copy": ar["logits"] // 2 if precision == "bf16" else 0,
                "host": rep["host"]["planned_peak_bytes"],
                "expected_peak": ar["persistent"] + ar["saved_layers"] + ar["logits"]
                + (ar["logits"] // 2 if precision == "bf16" else 0),
                "peak_op": rep["device"]["peak_op"], "predicted_s": rep["predicted_step_s"],
            })
            r = rows[-1]
            print(f"{size:5s} {precision}: peak {r['peak'] / GIB:6.2f} GiB (bound x{r['peak'] / r['bound']:.6f}), "
                  f"persistent {persistent / r['params']:.2f} B/param, saved {r['saved'] / GIB:.2f} GiB vs "
                  f"arithmetic {r['saved_expected'] / GIB:.2f} GiB (layers {r['saved_layers_expected'] / GIB:.2f}), "
                  f"compile {dt:.2f} s", flush=True)
    if args.print:
        return
    lines = [
        "# Real-size plans against the arithmetic",
        "",
        "Generated by `bench/real_size.py` (do not edit by hand) on the 2-core development machine,",
        f"{time.strftime('%Y-%m-%d')}, commit "
        + subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
        + ". Every plan: the weight-free `opt-<size>-noweights.dynamo.dynamic.onnx` of",
        f"`../shared/models`, `--shape input_ids={B}x{S} --shape labels={B}x{S}`, AdamW with the update fused into",
        "the step, unconstrained (the H200 profile's 139.8 GiB). The script's docstring derives the",
        "expected figures from the model's shape; the table puts the compiler's numbers beside them.",
        "",
        "| OPT | precision | params | planned device peak | arithmetic | peak / liveness bound | "
        "persistent on the device (B/param) | saved activations at the peak | arithmetic: layers (+ f32 logits) | "
        "temporaries at the peak | arithmetic: the gradient's bf16 copy | host | peak at | compile |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        offloaded = r["host"] > 0
        lines.append(
            f"| {r['size']} | {r['precision']} | {r['params'] / 1e6:.1f}M | {r['peak'] / GIB:.2f} GiB | "
            + ("(offloaded) | " if offloaded else f"{r['expected_peak'] / GIB:.2f} GiB ({r['peak'] / r['expected_peak']:.3f}) | ")
            + f"{r['peak'] / r['bound']:.6f} | {r['persistent'] / GIB:.2f} GiB ({r['persistent'] / r['params']:.2f}) | "
            f"{r['saved'] / GIB:.2f} GiB | "
            f"{r['saved_expected'] / GIB:.2f} GiB ({'fused' if r['fused'] else 'unfused'} attention"
            f"{'' if r['saved_expected'] > r['saved_layers_expected'] else '; logits dead at the peak'}) | "
            f"{r['temporaries'] / GIB:.2f} GiB | "
            + (f"{r['grad_copy'] / GIB:.2f} GiB | " if r["grad_copy"] else "- | ")
            + f"{r['host'] / GIB:.2f} GiB | {r['peak_op']} | {r['compile_s']:.2f} s |")
    lines += [
        "",
        "How to read it:",
        "",
        "- *persistent* is what lives for the whole step: the weights (fp32 masters under bf16) and AdamW's two",
        "  moments. 12 B/param, not the textbook 16: with the update fused into the step there is no",
        "  whole-model gradient buffer, and bf16 weight copies are made layer by layer (those kept for the",
        "  backward count as saved activations).",
        "- *saved activations at the peak* should be the layers' arithmetic plus what the embedding side and",
        "  the loss keep (token embeddings, the final layer norm, the bf16 copy of the tied output embedding,",
        "  the attention mask); the f32 logits' gradient takes the logits' bytes, and under bf16 its bf16",
        "  copy is a temporary right after the loss gradient, where the peak is.",
        "  When the peak falls later, in the output projection's backward matmul, the f32 logits are dead",
        "  and the arithmetic is the layers' alone (\"logits dead at the peak\").",
        "- *arithmetic* (second column) is 12 B/param + the layers' saved activations + the f32 logits (and,",
        "  under bf16, their gradient's bf16 copy): what the peak at the loss gradient must hold at least, by",
        "  the docstring's count. Since the loss gradient takes the logits' bytes (session 3), the fp32 peak",
        "  falls later, in the output projection's backward matmul, whose f32 temporaries (the gradient and",
        "  its products with the [V, h] embedding) this count leaves out: the fp32 rows sit 5-19% above it,",
        "  the bf16 rows within 2%.",
        "- *host* > 0: the plan did not fit the device (the profile's 139.8 GiB) with everything there, so",
        "  `--policy auto` chose ZeRO-Offload: master weights and AdamW state live in pinned host memory",
        "  and the device holds fetched copies of the weights (counted as saved activations), so the",
        "  device-side arithmetic does not apply.",
        "- *peak / liveness bound*: the packer's overhead over the largest sum of bytes live at once (issue #4",
        "  asks for at most 1.03).",
        "",
        "Commands: `python3 bench/real_size.py` (writes this page); each row compiles",
        "`colossal-opt compile <model> --shape input_ids=8x1024 --shape labels=8x1024 --precision <p>`.",
        "",
    ]
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
