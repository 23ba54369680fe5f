// colossal-fold-transposes changes no bit. The opt oracle's dynamo export
// writes every nn.Linear as transpose(W, perm [1, 0]) + matmul; compiled
// with --fold-transposes on and off, in fp32 and bf16, it trains 10 steps to
// identical loss, grad_norm and lr at every step and byte-identical final
// weights. The unfolded plan keeps perm [1, 0] transpose kernels (each
// forward one and its gradient's); the folded plan has none left, and
// check-plan stays clean (its peak is smaller: docs/planner.md).
// RUN: rm -rf %t && mkdir -p %t
// RUN: %python -c "import sys; sys.path.insert(0, '%pyutils'); import colossal_testutil as u; r = u.read_safetensors('%testdata/oracles/opt-train.oracle.safetensors'); u.write_safetensors('%t/b.safetensors', {'input_ids': r['input_ids'], 'labels': r['labels']})"

// The imported graph has the weight transposes the pass is for.
// RUN: colossal-opt compile %testdata/oracles/opt-train.dynamo.onnx -o %t/g.cplan --forward-only --emit-graph %t/graph.mlir --quiet
// RUN: FileCheck %s --check-prefix=GRAPH < %t/graph.mlir
// GRAPH: colossal.transpose {{.*}}perm = array<i64: 1, 0>{{.*}} -> tensor<64x64xf32>

// RUN: colossal-opt compile %testdata/oracles/opt-train.dynamo.onnx -o %t/off32.cplan --fold-transposes off --padding-idx model.lm_head.weight=1 --emit-plan %t/off32.plan.mlir --quiet
// RUN: colossal-opt compile %testdata/oracles/opt-train.dynamo.onnx -o %t/on32.cplan --padding-idx model.lm_head.weight=1 --emit-plan %t/on32.plan.mlir --quiet
// RUN: colossal-opt compile %testdata/oracles/opt-train.dynamo.onnx -o %t/off16.cplan --fold-transposes off --precision bf16 --padding-idx model.lm_head.weight=1 --emit-plan %t/off16.plan.mlir --quiet
// RUN: colossal-opt compile %testdata/oracles/opt-train.dynamo.onnx -o %t/on16.cplan --fold-transposes on --precision bf16 --padding-idx model.lm_head.weight=1 --emit-plan %t/on16.plan.mlir --quiet
// RUN: FileCheck %s --check-prefix=OFF < %t/off32.plan.mlir
// RUN: FileCheck %s --check-prefix=OFF < %t/off16.plan.mlir
// OFF: cplan.kernel "transpose"{{.*}}perm = array<i64: 1, 0>
// RUN: FileCheck %s --check-prefix=ON < %t/on32.plan.mlir
// RUN: FileCheck %s --check-prefix=ON < %t/on16.plan.mlir
// ON-NOT: perm = array<i64: 1, 0>
// ON: cplan.kernel "matmul"{{.*}}transpose_b = 1
// ON-NOT: perm = array<i64: 1, 0>

// RUN: colossal-run %t/off32.cplan --batches %t/b.safetensors --steps 10 --metrics %t/off32.jsonl --export-weights %t/off32.w.safetensors > /dev/null
// RUN: colossal-run %t/on32.cplan --batches %t/b.safetensors --steps 10 --metrics %t/on32.jsonl --export-weights %t/on32.w.safetensors --check-plan 2>&1 | FileCheck %s --check-prefix=CLEAN
// RUN: colossal-run %t/off16.cplan --batches %t/b.safetensors --steps 10 --metrics %t/off16.jsonl --export-weights %t/off16.w.safetensors > /dev/null
// RUN: colossal-run %t/on16.cplan --batches %t/b.safetensors --steps 10 --metrics %t/on16.jsonl --export-weights %t/on16.w.safetensors --check-plan 2>&1 | FileCheck %s --check-prefix=CLEAN
// CLEAN: check-plan: device arena {{.*}}: ok
// RUN: cut -d, -f1-4 %t/off32.jsonl > %t/off32.txt
// RUN: cut -d, -f1-4 %t/on32.jsonl > %t/on32.txt
// RUN: diff %t/off32.txt %t/on32.txt
// RUN: cmp %t/off32.w.safetensors %t/on32.w.safetensors
// RUN: cut -d, -f1-4 %t/off16.jsonl > %t/off16.txt
// RUN: cut -d, -f1-4 %t/on16.jsonl > %t/on16.txt
// RUN: diff %t/off16.txt %t/on16.txt
// RUN: cmp %t/off16.w.safetensors %t/on16.w.safetensors
