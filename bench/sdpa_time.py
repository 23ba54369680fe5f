#!/usr/bin/env python3
"""PyTorch's fused attention (SDPA) timed on the shapes bench/attention_check.cpp
times ours on: B 8, H 32, S 1024, causal, bf16, D 64 / 80 / 128; forward and
backward, CUDA events over 20 calls after 5 warm-ups. Prints one line per
shape with TFLOP/s counted as attention_check counts them (4 B H S^2 D / 2
forward, 2.5 times that backward) and the backend PyTorch picked. Run on the
GPU machine (its python3 has torch): python3 bench/sdpa_time.py"""
import torch
import torch.nn.functional as F


def time_ms(fn, iters=20, warmup=5):
    for _ in range(warmup):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    b, h, s = 8, 32, 1024
    for d in (64, 80, 128):
        q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for _ in range(3))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        dout = torch.randn_like(out)
        fwd = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))

        def fwd_bwd():
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            torch.autograd.grad(o, (q, k, v), dout)
        both = time_ms(fwd_bwd)
        bwd = both - fwd
        flops = 4.0 * b * h * s * s * d / 2
        backend = "flash" if torch.backends.cuda.flash_sdp_enabled() else "other"
        print(f"sdpa bf16 B{b} H{h} S{s} D{d} causal: forward {fwd:.3f} ms "
              f"({flops / fwd / 1e9:.1f} TFLOP/s)  backward {bwd:.3f} ms "
              f"({2.5 * flops / bwd / 1e9:.1f} TFLOP/s)  [{backend} enabled, torch {torch.__version__}]",
              flush=True)


if __name__ == "__main__":
    main()
