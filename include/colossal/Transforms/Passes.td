//===- Passes.td - Every colossal pass, in pipeline order ---*- tablegen -*-===//
#ifndef COLOSSAL_TRANSFORMS_PASSES_TD
#define COLOSSAL_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// fuse-attention
//===----------------------------------------------------------------------===//

def FuseAttentionPass : Pass<"colossal-fuse-attention", "::mlir::ModuleOp"> {
  let summary = "Replace softmax(q @ k^T * scale + mask) @ v with colossal.attention";
  let description = [{
    Input: forward graph functions (before `colossal-mixed-precision` and
    `colossal-autodiff`), with trainable weights marked.

    Output: each recognised attention becomes one `colossal.attention`
    (docs/cuda.md, "Fused attention"): q [B, H, S, D] @ k^T, scaled by
    one-element constants (mul, div), plus additive biases, softmax over
    the last axis, @ v, every intermediate used once. GQA's repeat_kv
    (reshape, expand, reshape) of k and v is undone, so the op reads the
    kv heads once. A bias computed from constants alone (HF's causal mask:
    index constants, less_equal, and, where(0, finfo.min), at the size
    --shape fixed) is evaluated exactly over the S x T grid
    (lib/Analysis/CausalMask.cpp); if every future key of every row is
    masked (<= -1e30) it becomes `causal = 1` and, when it is 0 elsewhere,
    disappears with its computation. Sliding windows and padding terms keep
    their bias; shifted diagonals and biases of data are not causal. Biases
    that depend on a trainable
    weight, probabilities with a second use, `where` masks and scales after
    the mask stay unfused (the file header lists every case). The [S, T]
    scores and probabilities no longer exist, so the planner never holds
    them; the backward is `attention_grad`.

    ```mlir
    // before
    %kt = colossal.transpose %k {perm = array<i64: 0, 1, 3, 2>} : ...
    %s = colossal.matmul %q, %kt : ... -> tensor<4x4x32x32xf32>
    %c = colossal.constant dense<2.500000e-01> : tensor<f32>
    %t = colossal.mul %s, %c : ...
    %m = colossal.add %t, %causal_mask : ...
    %p = colossal.softmax %m {axis = 3 : i64} : ...
    %o = colossal.matmul %p, %v : ... -> tensor<4x4x32x16xf32>
    // after
    %o, %lse = colossal.attention %q, %k, %v {causal = 1 : i64, scale = 2.500000e-01 : f64}
        : (...) -> (tensor<4x4x32x16xf32>, tensor<4x4x32xf32>)
    ```
  }];
}

//===----------------------------------------------------------------------===//
// fold-transposes
//===----------------------------------------------------------------------===//

def FoldTransposesPass : Pass<"colossal-fold-transposes", "::mlir::ModuleOp"> {
  let summary = "Read a matmul operand's transpose through the matmul's transpose flag";
  let description = [{
    Input: graph functions (in the pipeline: the forward, after
    `colossal-fuse-attention` and before `colossal-mixed-precision` and
    `colossal-autodiff`, so neither the forward nor the backward keeps a
    transposed copy of a weight).

    Output: every matmul operand produced by a `transpose` whose perm swaps
    exactly the last two dims (identity elsewhere) reads the transpose's
    input instead, with that operand's `transpose_a`/`transpose_b` toggled.
    The same through a `cast` between the transpose and the matmul when the
    matmul is the cast's only user: the matmul reads a new cast of the
    transpose's input. Batch dims, broadcasting and the result type are
    unchanged; results are bitwise those of the unfolded graph on the CPU
    backend. A transpose or cast left without users is erased; one with
    other users stays for them. Other perms are left alone.

    ```mlir
    // before
    %wt = colossal.transpose %w {perm = array<i64: 1, 0>}
        : (tensor<256x64xf32>) -> tensor<64x256xf32>
    %y = colossal.matmul %x, %wt
        : (tensor<8x32x64xf32>, tensor<64x256xf32>) -> tensor<8x32x256xf32>
    // after
    %y = colossal.matmul %x, %w {transpose_b = 1 : i64}
        : (tensor<8x32x64xf32>, tensor<256x64xf32>) -> tensor<8x32x256xf32>
    ```
  }];
  let statistics = [
    Statistic<"numFolded", "folded-operands",
              "Matmul operands that now read a transpose's input">
  ];
}

//===----------------------------------------------------------------------===//
// mixed-precision
//===----------------------------------------------------------------------===//

def MixedPrecisionPass : Pass<"colossal-mixed-precision", "::mlir::ModuleOp"> {
  let summary = "Compute in bf16 with f32 master weights and an f32 loss";
  let description = [{
    Input: forward graph functions (before `colossal-autodiff`).

    Output: every f32 weight (the master copy, which stays f32 and is what
    the optimizer updates) is read through a cast to bf16; f32 inputs and
    constants become bf16; every op is rebuilt on the new types (f32
    operands of an op that also has bf16 ones are cast down; casts and
    fills to f32 produce bf16); `softmax_cross_entropy` gets f32 scores, so
    the loss is f32; the outputs are cast back to their original types.
    Normalisation statistics and reductions accumulate in f64 in the CPU
    kernels whatever the storage type. The backward then runs in bf16 and
    the weight gradients are accumulated in f32.

    ```mlir
    // before
    %w = colossal.weight "w" : tensor<4x4xf32>
    %y = colossal.matmul %x, %w : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    // after
    %w = colossal.weight "w" : tensor<4x4xf32>
    %wb = colossal.cast %w : (tensor<4x4xf32>) -> tensor<4x4xbf16>
    %y = colossal.matmul %xb, %wb : (tensor<2x4xbf16>, tensor<4x4xbf16>) -> tensor<2x4xbf16>
    ```
  }];
}

//===----------------------------------------------------------------------===//
// autodiff
//===----------------------------------------------------------------------===//

def AutodiffPass : Pass<"colossal-autodiff", "::mlir::ModuleOp"> {
  let summary = "Differentiate the forward into micro_step: loss, count, gradients";
  let description = [{
    Input: one graph function `@main` whose result named `loss-name` is a
    float scalar, and `colossal.weight` ops, some marked `trainable`.

    Output: `@main` becomes `@micro_step(inputs) -> (loss, __count)`: the
    forward, `__count` (the number of labels a mean cross-entropy loss
    scores; 1 for any other loss), the reverse-mode backward seeded with
    d loss = count, and for every trainable weight `p`:
    `grad.p <- grad.p + f32(count * dL/dp)` through `colossal.state` /
    `colossal.assign`. Other results (logits) and the forward work only they
    needed are dropped. A weight used several times (a tied embedding) sums
    its gradients; a trainable weight that does not reach the loss loses its
    `trainable` mark (PyTorch leaves its .grad None and the optimizer skips
    it). Integer, boolean and mask computations are not differentiated.
    docs/autodiff.md tables the gradient rule of every op.

    ```mlir
    // after (sketch)
    func.func @micro_step(%ids: tensor<2x16xi64> {colossal.name = "input_ids"}, ...)
        -> (tensor<f32> {colossal.name = "loss"}, tensor<f32> {colossal.name = "__count"}) {
      %w = colossal.weight "model.w" {trainable} : tensor<64x64xf32>
      ... forward ... backward ...
      %acc = colossal.state "grad.model.w" : tensor<64x64xf32>
      %sum = colossal.add %acc, %dw : ...
      colossal.assign "grad.model.w", %sum : tensor<64x64xf32>
      return %loss, %count : tensor<f32>, tensor<f32>
    }
    ```
  }];
  let options = [
    Option<"lossName", "loss-name", "std::string", "\"loss\"",
           "The graph output to differentiate.">
  ];
}

//===----------------------------------------------------------------------===//
// build-optimizer-step
//===----------------------------------------------------------------------===//

def BuildOptimizerStepPass
    : Pass<"colossal-build-optimizer-step", "::mlir::ModuleOp"> {
  let summary = "Build apply_step: normalise, clip, schedule and update every weight";
  let description = [{
    Input: `@micro_step` (from `colossal-autodiff`).

    Output: `@apply_step(__step: i64, __count_total: f32) -> (grad_norm, lr)`:
    each `grad.p` state divided by `__count_total`; the global L2 norm of
    those gradients (reported before clipping); PyTorch's clip_grad_norm_
    when `clip-grad-norm` > 0; the learning rate from the step counter
    (`constant`, or `cosine`: Hugging Face's linear warm-up then cosine
    decay to `min-lr-ratio` x lr at `total-steps`); one `adamw` (decoupled
    weight decay, bias correction) or `sgd` (momentum, dampening, Nesterov)
    update per trainable weight, assigned back in place with its optimizer
    states (`adam.m.p`, `adam.v.p` or `sgd.momentum.p`); and the gradient
    states set to zero. Weights whose name matches `no-decay` get no weight
    decay.

    With `fuse`, there is no apply_step: the updates go into the step
    itself (see the option), which removes the full-model gradient buffers
    and lets each gradient die as soon as its update is done.
  }];
  let options = [
    Option<"optimizer", "optimizer", "std::string", "\"adamw\"", "adamw or sgd">,
    Option<"lr", "lr", "double", "1e-3", "Peak learning rate">,
    Option<"beta1", "beta1", "double", "0.9", "AdamW beta1">,
    Option<"beta2", "beta2", "double", "0.999", "AdamW beta2">,
    Option<"eps", "eps", "double", "1e-8", "AdamW epsilon">,
    Option<"weightDecay", "weight-decay", "double", "0.01", "Weight decay">,
    Option<"noDecay", "no-decay", "std::string", "\"\"",
           "Regex of weight names that get no weight decay">,
    Option<"momentum", "momentum", "double", "0.0", "SGD momentum">,
    Option<"dampening", "dampening", "double", "0.0", "SGD dampening">,
    Option<"nesterov", "nesterov", "bool", "false", "SGD Nesterov momentum">,
    Option<"clipGradNorm", "clip-grad-norm", "double", "0.0",
           "Clip the global gradient norm to this (0: no clipping)">,
    Option<"schedule", "schedule", "std::string", "\"constant\"",
           "constant or cosine">,
    Option<"warmupSteps", "warmup-steps", "int64_t", "0", "Linear warm-up steps">,
    Option<"totalSteps", "total-steps", "int64_t", "0",
           "Steps at which the cosine schedule reaches its floor">,
    Option<"minLrRatio", "min-lr-ratio", "double", "0.0",
           "The cosine schedule's floor, as a fraction of lr">,
    Option<"fuse", "fuse", "bool", "false",
           "Fuse the updates into the step (grad-accum 1, no clipping): "
           "micro_step becomes train_step(inputs, __step) -> (loss, __count, "
           "grad_norm, lr), each update placed right after its weight's "
           "gradient is complete and its last read, with no gradient states">,
    Option<"normIntoUpdate", "norm-into-update", "bool", "false",
           "With fuse and adamw: each update is one adamw_norm on the raw "
           "gradient (the division by the count and the weight's share of "
           "the gradient norm in the same pass; the weight's update must "
           "run on the device)">,
    ListOption<"normIntoUpdateOnly", "norm-into-update-only", "std::string",
               "With norm-into-update: only these weights (the rest, updated "
               "on the host, keep div, reduce_sum_square and adamw); empty: "
               "every weight">,
    Option<"rawGradToHost", "raw-grad-to-host", "bool", "false",
           "With fuse and adamw: the updates not made adamw_norm (those run "
           "on the host under an offloaded optimizer) read the raw gradient "
           "and divide it by the count themselves (adamw's divisor "
           "operand); the norm still reads the divided gradient">
  ];
}

//===----------------------------------------------------------------------===//
// fuse-elementwise
//===----------------------------------------------------------------------===//

def FuseElementwisePass
    : Pass<"colossal-fuse-elementwise", "::mlir::ModuleOp"> {
  let summary = "Group chains of elementwise ops into colossal.fused_elementwise";
  let description = [{
    Input: graph functions of the whole step (after autodiff and the
    optimizer step are built, before `colossal-lower-to-plan`).

    Output: every connected group of elementwise ops (unary float ops,
    not, identity, cast, add sub mul div pow max min, and or xor, the
    comparisons, where) in which each intermediate value is used only
    inside the group becomes one `colossal.fused_elementwise`, whose
    result is the group's one output (a value with a use outside the group
    cuts the group there). Inputs may broadcast; the result has the
    output's shape. Splat constants and fills that feed the group become
    scalar registers. A group holds at most 8 inputs and a 64-int program;
    a single op is left alone, and so are reductions, matmuls, layout ops
    and the in-place optimizer updates. The result is bitwise that of the
    unfused ops on the CPU backend (every register keeps its dtype).

    ```mlir
    // before
    %c = colossal.constant dense<0.5> : tensor<f32>
    %a = colossal.add %x, %b : (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
    %m = colossal.mul %a, %c : (tensor<8x64xf32>, tensor<f32>) -> tensor<8x64xf32>
    %r = colossal.relu %m : (tensor<8x64xf32>) -> tensor<8x64xf32>
    // after: registers r0 = %x, r1 = %b; r2 = add, r3 = fill 0.5,
    // r4 = mul, r5 = relu (f32 is DType 1)
    %r = colossal.fused_elementwise %x, %b
        {constants = array<f64: 5.000000e-01>,
         program = array<i64: 20, 1, 0, 1, 66, 1, 0, 22, 1, 2, 3, 10, 1, 4>}
        : (tensor<8x64xf32>, tensor<64xf32>) -> tensor<8x64xf32>
    ```
  }];
}

//===----------------------------------------------------------------------===//
// lower-to-plan
//===----------------------------------------------------------------------===//

def LowerToPlanPass : Pass<"colossal-lower-to-plan", "::mlir::ModuleOp"> {
  let summary = "Turn graph functions into plans of buffers, views and kernels";
  let description = [{
    Input: graph functions of `colossal` ops on static tensors, arguments
    and results named by `colossal.name`: one forward function (as the
    importer writes it), or `@micro_step` and `@apply_step` (after
    `colossal-autodiff` and `colossal-build-optimizer-step`).

    Output: one no-argument plan function of `cplan` ops with a
    `cplan.program` marker before each program's instructions (`forward`;
    or `micro_step`, `apply_step`): one `cplan.buffer.alloc` (device space,
    64-byte aligned) and `cplan.view` per tensor value, a `cplan.bind` for
    each input and output (with its program), weight, state and constant,
    and one `cplan.kernel` per computational op, in the original order on
    stream 0. Weights and states are one buffer per name, shared by all
    programs; each weight binding carries its `--init random` rule (biases
    zeros, 1-D weights ones, others normal(0, init-std)) and its export name.
    A `colossal.assign` is written in place when the update's op comes after
    every read of the old value and its kernel may alias its input (the
    elementwise ops, `fill`, `adamw`, `sgd`); otherwise it is an `identity`
    copy. A `colossal.reshape` becomes a second view of its input's buffer
    (no copy, no kernel). Large splat constants become `fill` kernels
    instead of stored bytes. With `offload-optimizer`, trained weights and
    optimizer states are placed in the host space and `cplan.copy` ops move
    weights up and gradients down (see the option): each weight's fetch is
    an H2D copy on stream 1 behind a stream-0 record, issued as late as the
    serial copy stream allows while its predicted time still fits in the
    compute before the weight's first use, and stream 0 waits for it right
    before that use. Weights named in `device-resident` keep their master
    and optimizer state on the device and update on stream 0. Each update then runs
    on the host stream 3, overlapped with the rest of the step: stream 0
    records an event behind the gradient's producers, the D2H copy stream 2
    waits for it and copies the gradient, lr and step down, the host stream
    waits for that copy, runs the update and records. Stream 0 waits for
    the previous gradient copy before issuing the next (a device gradient is
    held until then), for the host stream before it touches a buffer the
    host stream writes, and for everything still in flight at the program's
    end; the plan declares `cplan.stream_kinds` up to the host stream
    (docs/planner.md, "The ZeRO-Offload host stream"). With
    `cross-step-updates` (the default) the host stream is carried across
    the program's end instead (`cplan.carried_streams`): each fetch waits
    for its weight's update of the previous step, and the updates predicted
    to start after stream 0's last kernel move to the program's end in the
    forward's order (docs/planner.md, "Updates across the step boundary").
    Weights named in `streamed-updates` keep master and moments in host
    memory but update on stream 0: the three come up on stream 1 as fetches
    (with leads), the update writes device copies, and stream 2 copies them
    back over the host ones; stream 0 waits for the write-back two streamed
    updates back before the next (docs/planner.md, "Updates streamed through
    the device"). Live ranges and
    offsets are left for `colossal-assign-offsets`.

    ```mlir
    // before
    func.func @main(%x: tensor<4xf32> {colossal.name = "x"}) -> (tensor<4xf32> {colossal.name = "y"}) {
      %0 = colossal.relu %x : (tensor<4xf32>) -> tensor<4xf32>
      return %0 : tensor<4xf32>
    }
    // after
    func.func @main() attributes {cplan.num_streams = 1 : i64, cplan.num_events = 0 : i64} {
      %b0 = cplan.buffer.alloc device size(16) align(64)
      %v0 = cplan.view %b0[0] : memref<4xf32>
      cplan.bind input "x" %v0 : memref<4xf32>
      %b1 = cplan.buffer.alloc device size(16) align(64)
      %v1 = cplan.view %b1[0] : memref<4xf32>
      cplan.kernel "relu" ins(%v0 : memref<4xf32>) outs(%v1 : memref<4xf32>) params {} stream(0)
      cplan.bind output "y" %v1 : memref<4xf32>
      return
    }
    ```
  }];
  let options = [
    Option<"maxConstantBytes", "max-constant-bytes", "int64_t", "1 << 20",
           "A non-splat constant larger than this is an error (the importer "
           "keeps large computations as ops instead of folding them).">,
    Option<"initStd", "init-std", "double", "0.02",
           "Standard deviation of the `normal` init rule of matrix weights">,
    Option<"exportPrefix", "export-prefix", "std::string", "\"model.\"",
           "Prefix stripped from weight names for --export-weights (the "
           "export wrapper's attribute name)">,
    Option<"offloadOptimizer", "offload-optimizer", "bool", "false",
           "ZeRO-Offload placement: trained weights' master copies and the "
           "optimizer state in the host arena, each update run on the host "
           "stream (its gradient, lr and step copied down on the D2H stream), "
           "the step computing with device copies of the weights fetched "
           "on the H2D stream 1, issued the cost model's copy time ahead of "
           "their first use">,
    ListOption<"deviceResident", "device-resident", "std::string",
               "With offload-optimizer: trained weights whose master copy "
               "and optimizer state stay on the device, updated on stream 0 "
               "(the budget's device-resident share; names)">,
    ListOption<"streamedUpdates", "streamed-updates", "std::string",
               "With offload-optimizer: trained weights whose master copy "
               "and optimizer state stay in host memory but whose update runs "
               "on the device (stream 0): the master and moments come up on "
               "stream 1 with a lead, the update's results go back down on "
               "stream 2 (names; docs/planner.md, \"Updates streamed through "
               "the device\")">,
    Option<"deviceProfile", "device-profile", "std::string", "\"\"",
           "Device profile (JSON) whose rates time the weight fetches' "
           "leads; empty: the built-in H200 figures">,
    Option<"crossStepUpdates", "cross-step-updates", "bool", "true",
           "With offload-optimizer: the host stream's updates run on across "
           "the program's end (cplan.carried_streams), each weight's fetch "
           "waiting for its update, and the updates predicted to start after "
           "stream 0's work move to the program's end in the forward's "
           "order; false: stream 0 waits for every update at the end">
  ];
  let dependentDialects = ["::mlir::colossal::plan::CPlanDialect",
                           "::mlir::func::FuncDialect"];
}

//===----------------------------------------------------------------------===//
// rematerialize
//===----------------------------------------------------------------------===//

def RematerializePass
    : Pass<"colossal-rematerialize", "::mlir::func::FuncOp"> {
  let summary = "Recompute idle device buffers instead of keeping them, to meet a budget";
  let description = [{
    Input: a plan function after `colossal-lower-to-plan` (before
    `colossal-offload-across-gaps` and offsets).

    While the device's liveness peak (as `colossal-offload-across-gaps`
    counts it: bound buffers pinned for the whole step) is above
    `budget-bytes`, buffers idle across the peak are dropped after their use
    before the gap and recomputed right before their use after it: the
    producing `cplan.kernel` is cloned there, writing a new device buffer,
    and that use and every later one read the new buffer (through views
    like the old ones). The producer's inputs stay live until the recompute
    (their extended live ranges are charged to the choice). Which buffers:
    `chooseRemat` (include/colossal/Analysis/RematChoice.h), greedy by
    predicted recompute time per byte freed at the peak, rounds of choices
    until the peak fits, nothing is left to choose, or `max-recomputes`.

    A buffer is a candidate when it is an unbound device buffer of at least
    `min-bytes`, written once, by the kernel that first touches it, through
    a view covering all of it; that kernel is deterministic and has no side
    effects (any op but the in-place optimizer updates `adamw` and `sgd`),
    none of its inputs shares a buffer with its outputs, no input is
    written between the kernel and the recompute, and both are in the same
    program. So the recompute reads the same bytes and writes the same
    values: plans stay bitwise equal to unconstrained ones on the CPU
    backend. The producer's other outputs, if any, go to scratch buffers.

    Chains: an input of the producer that would die before the recompute
    and is itself recomputable by the same rules is recomputed too (and its
    producer's inputs in turn), up to `max-chain` kernels, cloned in IR
    order into new buffers that die after their last read in the chain.
    The remaining inputs (the leaves) stay live until the recompute and
    must not be written between their first read in the chain and it. Each
    length up to the limit is a separate candidate: the chain's time is the
    sum of its kernels', its extra bytes the leaves kept live plus its
    intermediates at the recompute point.

    Times come from the cost model (include/colossal/Analysis/CostModel.h)
    with the rates of `device-profile` (a JSON profile; the scalar options
    below when it is empty). With `offload`, a buffer is recomputed only
    when the recompute is predicted faster than parking it in host memory
    (a device-to-host and a host-to-device copy: bytes over the link rates
    plus two copy latencies); the rest is left to
    `colossal-offload-across-gaps`. Without it any candidate may be taken.

    Recompute kernels carry `colossal.recompute`, new buffers
    `colossal.recomputed`; the function gets `colossal.remat`
    (`{buffers, bytes, added_s}`: buffers recomputed, their bytes, the
    predicted added time per run of the program). `budget-bytes` = 0 turns
    the pass off.

    ```mlir
    // %x written at 0, read at 1 and again at 40; the peak at 20:
    cplan.kernel "relu" ins(%a : memref<64xf32>) outs(%x : memref<64xf32>) ...  // 0
    ...
    %x2 = cplan.buffer.alloc device size(256) align(64) {colossal.recomputed}
    %v2 = cplan.view %x2[0] : memref<64xf32>
    cplan.kernel "relu" ins(%a : memref<64xf32>) outs(%v2 : memref<64xf32>) ... {colossal.recompute}
    cplan.kernel "mul" ins(%v2, ...) ...                                        // 40
    ```
  }];
  let options = [
    Option<"budgetBytes", "budget-bytes", "int64_t", "0",
           "Device bytes the liveness peak must fit (0: off)">,
    Option<"offload", "offload", "bool", "false",
           "Offload runs after this pass: leave it the buffers whose "
           "recompute is predicted slower than parking them">,
    Option<"minBytes", "min-bytes", "int64_t", "256",
           "Smaller buffers are not worth a recompute">,
    Option<"minGap", "min-gap", "int64_t", "2",
           "Instructions between the two uses around a gap">,
    Option<"maxRecomputes", "max-recomputes", "int64_t", "100000",
           "At most this many buffers recomputed">,
    Option<"maxChain", "max-chain", "int64_t", "3",
           "At most this many kernels cloned per recompute (1: the "
           "producer alone)">,
    ListOption<"streamedUpdates", "streamed-updates", "std::string",
               "With offload-optimizer: trained weights whose master copy "
               "and optimizer state stay in host memory but whose update runs "
               "on the device (stream 0): the master and moments come up on "
               "stream 1 with a lead, the update's results go back down on "
               "stream 2 (names; docs/planner.md, \"Updates streamed through "
               "the device\")">,
    Option<"deviceProfile", "device-profile", "std::string", "\"\"",
           "A device profile JSON (docs/planner.md); empty: the scalar "
           "rates below">,
    Option<"hbmBytesPerS", "hbm-bytes-per-s", "double", "4.2e12",
           "Device memory bandwidth (no profile)">,
    Option<"gemmTflops", "gemm-tflops", "double", "700",
           "Matmul rate for every element type and shape (no profile)">,
    Option<"kernelFloorS", "kernel-floor-s", "double", "3e-6",
           "Least time of a kernel (no profile)">,
    Option<"h2dBytesPerS", "h2d-bytes-per-s", "double", "55e9",
           "Host-to-device copy rate (no profile)">,
    Option<"d2hBytesPerS", "d2h-bytes-per-s", "double", "55e9",
           "Device-to-host copy rate (no profile)">,
    Option<"copyLatencyS", "copy-latency-s", "double", "15e-6",
           "Fixed cost of one copy (no profile)">
  ];
}

//===----------------------------------------------------------------------===//
// offload-across-gaps
//===----------------------------------------------------------------------===//

def OffloadAcrossGapsPass
    : Pass<"colossal-offload-across-gaps", "::mlir::func::FuncOp"> {
  let summary = "Park idle device buffers in host memory to meet a budget";
  let description = [{
    Input: a plan function after `colossal-lower-to-plan` (before offsets).

    While the device's liveness peak (the sum of the sizes of device
    buffers live at one instruction; inputs, outputs, weights, states and
    constants pinned for the whole step) is above `budget-bytes`, the
    largest unbound device buffer of at least `min-bytes` that is idle
    across the peak instruction (between two consecutive uses at least
    `min-gap` instructions apart) is parked: a `cplan.copy` to a new host
    buffer right after the use before the gap, a copy back into a new device
    buffer right before the use after it, and every later use reads the new
    buffer (through views like the old ones). Activations saved for the
    backward and device copies of offloaded weights are the typical
    candidates. Stops when the peak fits, when nothing is left to park, or
    after `max-copies` rounds; the budget check then reports what remains.
    `budget-bytes` = 0 turns the pass off.

    ```mlir
    // a buffer used at instructions 3 and 40, the peak at 20:
    cplan.kernel "relu" ins(...) outs(%v : memref<64xf32>) ...   // 3
    cplan.copy %whole to %parked stream(0) : memref<256xui8>      // offload
    ...
    cplan.copy %parked to %fetched stream(0) : memref<256xui8>    // prefetch
    cplan.kernel "mul" ins(%v2, ...) ...                           // 40, reads the fetched copy
    ```
  }];
  let options = [
    Option<"budgetBytes", "budget-bytes", "int64_t", "0",
           "Device bytes the liveness peak must fit (0: off)">,
    Option<"minBytes", "min-bytes", "int64_t", "256",
           "Smaller buffers are not worth a copy">,
    Option<"minGap", "min-gap", "int64_t", "2",
           "Instructions between the two uses around a gap">,
    Option<"maxCopies", "max-copies", "int64_t", "100000",
           "At most this many rounds (buffers parked or leads shortened)">,
    ListOption<"streamedUpdates", "streamed-updates", "std::string",
               "With offload-optimizer: trained weights whose master copy "
               "and optimizer state stay in host memory but whose update runs "
               "on the device (stream 0): the master and moments come up on "
               "stream 1 with a lead, the update's results go back down on "
               "stream 2 (names; docs/planner.md, \"Updates streamed through "
               "the device\")">,
    Option<"deviceProfile", "device-profile", "std::string", "\"\"",
           "Device profile JSON for the lead times (empty: the H200 figures)">
  ];
}

//===----------------------------------------------------------------------===//
// assign-offsets
//===----------------------------------------------------------------------===//

def AssignOffsetsPass : Pass<"colossal-assign-offsets", "::mlir::func::FuncOp"> {
  let summary = "Compute buffer live ranges and place buffers in their arena";
  let description = [{
    Input: a plan function (after `colossal-lower-to-plan`). Instructions are
    the `cplan.kernel`, `cplan.copy` and `cplan.event.*` ops, numbered from 0
    in order. A buffer is live from the first instruction that touches any
    view of it to the last; buffers bound as inputs, outputs, weights or
    constants are live for the whole step.

    Output: every `cplan.buffer.alloc` gets `live(first, last)` and an
    `offset` in its space's arena, such that buffers whose live ranges
    overlap never share bytes. Offsets come from the interval packer
    (include/colossal/Analysis/OffsetPacker.h). The function gets
    `cplan.arena_bytes` (one entry per memory space: device, host) and
    `cplan.lower_bound_bytes` (the largest total of simultaneously live
    bytes, per space) so the gap to the lower bound is visible.

    ```mlir
    // two buffers whose lifetimes do not overlap share offset 0
    %a = cplan.buffer.alloc device size(100) align(16) live(0, 1) offset(0)
    %b = cplan.buffer.alloc device size(100) align(16) live(2, 3) offset(0)
    ```
  }];
}

#endif // COLOSSAL_TRANSFORMS_PASSES_TD
