#!/bin/bash
# docs/results.md from session 6's harness (call 3) and the PyTorch rows
# of sessions 3-6; the notes say what each row is. Run here, from the
# repository root: bash bench/session6/report.sh
set -eu
cd "$(dirname "$0")/../.."
D=docs/results-data/2026-11-28-session6
exec /usr/bin/python3 bench/opt_bench.py report "$D" \
  "$D/call3-colossal.jsonl" "$D/call3-pytorch.jsonl" \
  docs/results-data/2026-11-28-session5/call4-pytorch.jsonl \
  docs/results-data/2026-11-28-session4/call4-pytorch.jsonl \
  docs/results-data/2026-11-28-session3/call4-pytorch.jsonl \
  --note "Colossal rows: session 6, call 3 (bench/session6/call3.sh), plans compiled here (the compiler of commit fa73167 with the budget fallback of 5580f58, committed after it) with devices/h200-fitted.json as refitted from call 2 (predicted step times are that profile's; the plans' reports: $D/plans). Since session 5: the loss and its gradient by rows (a block a row, one pass), the host updates across the step boundary (the offloaded plans carry their host stream; the tail chosen by the steady state), host kernels in eight tasks a thread (docs/cuda.md, Session 6). PyTorch rows: session 3's call 4 (every size and budget), session 4's and session 5's call 4, and session 6's call 3 (1.3b 51,227 and 6.7b 12,534 unconstrained, the same-run anchor). Where more than one measured a row the fastest is shown." \
  --note "OPT-6.7b under 24 GiB: 3,777 tokens/s (2.169 s a step, predicted 2.338), 0.73x BASELINES.md's bound (every parameter's CPU AdamW at 4.2 G params/s: 1.59 s); session 5: 2.68 s. A run with COLOSSAL_CUDA_SCHEDULE=yield in the same call took 2.008 s (0.79x), but the same setting made OPT-2.7b under 6 GiB 9% slower in call 4, so it is not the default. PyTorch cannot train it under 24 GiB, plain or offloaded." \
  --note "OPT-2.7b under 24 GiB: 16,452 tokens/s (498 ms a step), 2.70x BASELINES.md's simple CPU-offload PyTorch (6.1k)."
