#!/usr/bin/env python3
"""PyTorch's side of the OPT benchmark (bench/opt_bench.py runs it on the GPU machine).

Trains a Hugging Face OPT with random weights for a few steps the way
../shared/docs/BASELINES.md measured PyTorch: bf16 autocast over fp32
parameters, fused AdamW, SDPA attention, batch x seq random tokens with the
labels equal to the inputs (the model shifts them). Prints one JSON object:

  {"framework": "pytorch", "mode": ..., "size": ..., "params": N,
   "step_s": [...], "median_step_s": s, "tokens_per_s": t,
   "peak_bytes": torch.cuda.max_memory_allocated(), "status": "ok"}

or status "oom" (with the message) when the model does not fit under the
cap. Modes:

  plain        everything on the GPU (PyTorch eager)
  offload      the simple CPU-offloaded AdamW of BASELINES.md: bf16 weights
               on the GPU for forward and backward, fp32 master weights and
               AdamW state in pinned host memory, every step copies the
               gradients down, runs torch's fused CPU AdamW and copies the
               weights back, with no overlap

--mem-cap-gib caps the caching allocator with
torch.cuda.set_per_process_memory_fraction, as BASELINES.md emulates a
smaller card. The model's shape comes from the weight-free graph's JSON in
../shared/models (opt-<size>-noweights.dynamo.dynamic.json) so that both
frameworks train the same architecture.
"""

import argparse
import json
import statistics
import sys
import time


def build_config(shape, dropout):
    from transformers import OPTConfig

    hidden = shape["hidden"]
    return OPTConfig(
        vocab_size=shape["vocab"],
        hidden_size=hidden,
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        ffn_dim=shape["ffn"],
        max_position_embeddings=2048,
        word_embed_proj_dim=shape.get("word_embed_proj_dim", hidden),
        do_layer_norm_before=shape.get("do_layer_norm_before", True),
        dropout=dropout,
        attention_dropout=dropout,
        activation_dropout=0.0,
        enable_bias=True,
        tie_word_embeddings=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", required=True, help="the model JSON of ../shared/models")
    ap.add_argument("--size", required=True, help="a label for the output (125m, 1.3b, ...)")
    ap.add_argument("--mode", choices=["plain", "offload"], default="plain")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mem-cap-gib", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    args = ap.parse_args()

    import torch
    from transformers import OPTForCausalLM

    with open(args.shape) as f:
        shape = json.load(f)
    result = {"framework": "pytorch", "mode": args.mode, "size": args.size,
              "batch": args.batch, "seq": args.seq,
              "mem_cap_gib": args.mem_cap_gib or None,
              "torch": torch.__version__}
    dev = torch.device("cuda", 0)
    if args.mem_cap_gib:
        total = torch.cuda.get_device_properties(dev).total_memory
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, args.mem_cap_gib * 2**30 / total), 0)
    torch.manual_seed(0)
    try:
        config = build_config(shape, 0.0)
        config._attn_implementation = "sdpa"
        # Initialised on the GPU (seconds, where a CPU init of 6.7b takes
        # minutes); the offload mode then moves the fp32 masters to the host.
        # (Offload builds it in bf16 so that a model whose fp32 copy would
        # not fit under the cap can still be built; the masters are its
        # values in fp32.)
        torch.set_default_dtype(torch.float32 if args.mode == "plain" else torch.bfloat16)
        with dev:
            model = OPTForCausalLM(config)
        torch.set_default_dtype(torch.float32)
        if args.mode == "plain":
            opt = torch.optim.AdamW(model.parameters(), lr=args.lr, fused=True)
        else:
            masters = [p.detach().to("cpu", torch.float32).pin_memory() for p in model.parameters()]
            cpu_opt = torch.optim.AdamW(masters, lr=args.lr, fused=True)
            host_grads = [torch.empty_like(m).pin_memory() for m in masters]
            for m, g in zip(masters, host_grads):
                m.grad = g
            torch.cuda.empty_cache()
        result["params"] = sum(p.numel() for p in model.parameters())
        ids = torch.randint(0, shape["vocab"], (args.batch, args.seq), device=dev)
        times = []
        for step in range(args.warmup + args.steps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            if args.mode == "plain":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                loss = model(input_ids=ids, labels=ids).loss
                loss.backward()
                for p, g in zip(model.parameters(), host_grads):
                    g.copy_(p.grad.float(), non_blocking=False)
                    p.grad = None
                cpu_opt.step()
                for p, m in zip(model.parameters(), masters):
                    p.data.copy_(m, non_blocking=False)
            torch.cuda.synchronize()
            if step >= args.warmup:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        result.update(status="ok", step_s=times, median_step_s=med,
                      tokens_per_s=args.batch * args.seq / med,
                      loss=float(loss.detach().float().cpu()),
                      peak_bytes=torch.cuda.max_memory_allocated(dev))
    except torch.OutOfMemoryError as e:
        result.update(status="oom", message=str(e).splitlines()[0][:300])
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
