#!/bin/bash
# docs/results.md from session 5's harness (call 4) and the PyTorch rows
# of sessions 3-5; the notes say what each row is. Run here, from the
# repository root: bash bench/session5/report.sh
set -eu
cd "$(dirname "$0")/../.."
D=docs/results-data/2026-11-28-session5
exec /usr/bin/python3 bench/opt_bench.py report "$D" \
  "$D/call4-colossal.jsonl" "$D/call4-pytorch.jsonl" \
  docs/results-data/2026-11-28-session4/call4-pytorch.jsonl \
  docs/results-data/2026-11-28-session3/call4-pytorch.jsonl \
  --note "Colossal rows: session 5, call 4 (bench/session5/call4.sh), plans compiled by the compiler of commit 9d79905 (unchanged in session 5) with devices/h200-fitted.json as refitted from calls 2-3 and committed after it (predicted step times are that profile's); the runtime is session 5's (packed AdamW, the attention backward's dq by atomics, docs/cuda.md). PyTorch rows: session 3's call 4 (every size and budget), session 4's call 4 (125m, 1.3b unconstrained) and session 5's call 4 (1.3b 50,678 and 6.7b 12,051 unconstrained, the same-run anchor). Where more than one measured a row the fastest is shown." \
  --note "After call 4 (call 5, bench/session5/call5.sh: the attention backward at 32 query rows a step for head dim 64, the default since; call 4's plans; colossal-run --steps 4, median of steps 1-3): OPT-125m unconstrained 262,375 tokens/s (1.09x PyTorch's best, 240,971; its same-run PyTorch row: 207,205), OPT-350m 121,512 (0.99x of 122,759), OPT-1.3b 52,226 (1.025x its same-run PyTorch row, 50,957; 1.02x the best, 51,099). $D/call5-*." \
  --note "OPT-6.7b under 24 GiB: 3,059 tokens/s (2.68 s a step, predicted 2.69), 0.59x BASELINES.md's bound (every parameter's CPU AdamW at 4.2 G params/s: 1.59 s). The step is the host AdamW: 8.41 GiB of the 74.41 GiB optimizer state stays on the device, the rest (about 5.9 G parameters) updates on the host at the 2.66 G params/s measured in a step beside the PCIe copies (3.63 alone: the host's memory bandwidth, about 100 GB/s, is shared), and the forward cannot overlap it while each step joins its streams (docs/cuda.md, Session 5). PyTorch cannot train it under 24 GiB, plain or offloaded." \
  --note "OPT-2.7b under 24 GiB: 15,510 tokens/s (528 ms a step), 2.54x BASELINES.md's simple CPU-offload PyTorch (6.1k): 20.99 GiB of the 29.63 GiB optimizer state stays on the device."
