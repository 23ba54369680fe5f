#!/usr/bin/env python3
#===- verify_optimizers.py - Optimizer options against PyTorch -------------===#
"""Check colossal's optimizer options step by step against PyTorch.

    python3 bench/verify_optimizers.py prepare DIR [--bin build/bin] [--steps 20]
                                        [--probe ARCH.CONFIG:K[,K]]...
    python3 bench/verify_optimizers.py device DIR [--json OUT.json] [--markdown OUT.md]

Two halves, run on two machines (docs/autodiff.md, "Optimizer options against
PyTorch", has the results):

prepare (here: colossal built in build/, standard library only): for the OPT
and LLaMA oracles of test/data/oracles (torchscript exports, whose initializer
names are the wrapper's parameter names `model.<HF name>`) and every
configuration of CONFIGS, `colossal-opt compile` the training step with the
configuration's flags and `colossal-run` it for --steps steps on the oracle's
four batches (step k uses batch k % 4), recording loss, grad_norm and lr per
step. Writes into DIR: <arch>.init.safetensors (the initial weights, the
compile's PLAN.weights.safetensors: the oracle's initialisation under the ONNX
names; identical for every configuration, which is checked),
<arch>.batches.safetensors (input_ids, labels [4, 4, 32]), the oracle .json,
<arch>.<config>.metrics.jsonl and manifest.json.

device (where torch and transformers are installed; fp32 on the CPU): for each
run of the manifest, rebuild the oracle's Hugging Face model (`hf_class`,
`model_config`, eager attention), load the initial weights, and train the same
steps with torch.optim.SGD / AdamW (no-decay parameters in a second param group
with weight_decay 0, by `re.search(no_decay, "model." + name)`, the POSIX ERE
that colossal matches anywhere in the name with llvm::Regex),
torch.nn.utils.clip_grad_norm_ and transformers.get_cosine_schedule_with_warmup.
Per step it compares, like with like:

- loss: the HF loss before the step's update, |colossal - torch| / |torch|
  <= 1e-4;
- grad_norm: clip_grad_norm_'s return value (the global L2 norm before
  clipping; max_norm = inf when the configuration does not clip, which scales
  by exactly 1), relative error <= 1e-4;
- lr: the lr the optimizer applies at step k, i.e. param_groups[0]["lr"] read
  before optimizer.step() (scheduler.step() comes after it), against colossal's
  metrics lr (apply_step's / train_step's lr output for __step = k),
  |difference| <= 1e-7.

With `prepare --probe ARCH.CONFIG:K[,K]` (colossal's weights at step K are
exported), the device half also explains a mismatch at step K: how far the
two runs' weights are apart, the loss and grad norm PyTorch computes at
colossal's weights (equal to colossal's metrics when colossal's step is right
for its weights), which parameters' gradients differ, how many ReLU inputs
(OPT's fc1 outputs) have opposite signs in the two forwards, and both f32
runs' distance from a PyTorch f64 run of the same configuration.

Each configuration also has a control: the same PyTorch run with the option
under test changed (nesterov off, no clipping, no dampening, decay on every
weight). The control's distance from colossal shows that the comparison would
catch that option being ignored. Config O (the oracles' own AdamW) also checks
the PyTorch side against the oracle's recorded losses.

The run reported in docs/autodiff.md (the folder is in .git/info/exclude and
travels to the device machine as a carried path):

    python3 bench/verify_optimizers.py prepare .optcheck --probe opt.O:16,17 \
        --probe opt.A:12,13 --probe opt.B:17,18 --probe llama.A:12,13
    # on the GPU machine (only its CPU is used), carrying .optcheck:
    python3 bench/verify_optimizers.py device .optcheck --json $OUT/verify_optimizers.json \
        --markdown $OUT/table.md

Exit status 0 when every run passes, 1 when one fails, 2 on bad usage.
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback

ARCHS = ("opt", "llama")
# Compile flags each arch needs besides the optimizer's (OPT's embedding has
# padding_idx = pad_token_id = 1).
ARCH_FLAGS = {
    "opt": ["--padding-idx", "model.model.decoder.embed_tokens.weight=1"],
    "llama": [],
}
LOSS_RTOL, GRAD_NORM_RTOL, LR_ATOL = 1e-4, 1e-4, 1e-7

_BASE = dict(optimizer="adamw", lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
             momentum=0.0, dampening=0.0, nesterov=False, clip=None, schedule="constant",
             warmup=0, total=0, no_decay=None)


def _cfg(**kw):
    c = dict(_BASE)
    c.update(kw)
    return c


# name -> (description, configuration, control description, control overrides).
CONFIGS = {
    "O": ("adamw lr 1e-3 wd 0.01 (the oracles' own run)",
          _cfg(weight_decay=0.01), None, None),
    "A": ("sgd lr 0.05 momentum 0.9 nesterov, wd 0.01",
          _cfg(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
          "nesterov off", dict(nesterov=False)),
    "B": ("adamw lr 1e-3 wd 0.01, clip 0.5, cosine warm-up 5 total 20",
          _cfg(weight_decay=0.01, clip=0.5, schedule="cosine", warmup=5, total=20),
          "no clipping", dict(clip=None)),
    "C": ("sgd lr 0.05 momentum 0.9 dampening 0.1, clip 1.0, cosine warm-up 2 total 20",
          _cfg(optimizer="sgd", lr=0.05, momentum=0.9, dampening=0.1, clip=1.0,
               schedule="cosine", warmup=2, total=20),
          "dampening 0", dict(dampening=0.0)),
    "D": ("adamw lr 1e-3 wd 0.1, no-decay 'bias|norm'",
          _cfg(weight_decay=0.1, no_decay="bias|norm"),
          "decay on every weight", dict(no_decay=None)),
    "E": ("sgd lr 0.05 (no momentum) wd 0.05, no-decay 'bias|norm', cosine warm-up 0 total 20",
          _cfg(optimizer="sgd", lr=0.05, weight_decay=0.05, no_decay="bias|norm",
               schedule="cosine", warmup=0, total=20),
          "decay on every weight", dict(no_decay=None)),
}


def compile_flags(c):
    """colossal-opt compile flags for a configuration (every value explicit)."""
    f = ["--optimizer", c["optimizer"], "--lr", repr(c["lr"]),
         "--weight-decay", repr(c["weight_decay"])]
    if c["optimizer"] == "adamw":
        f += ["--betas", f"{c['betas'][0]!r},{c['betas'][1]!r}", "--eps", repr(c["eps"])]
    else:
        f += ["--momentum", repr(c["momentum"]), "--dampening", repr(c["dampening"])]
        if c["nesterov"]:
            f.append("--nesterov")
    if c["no_decay"]:
        f += ["--no-decay", c["no_decay"]]
    if c["clip"]:
        f += ["--clip-grad-norm", repr(c["clip"])]
    f += ["--schedule", c["schedule"]]
    if c["schedule"] == "cosine":
        f += ["--warmup-steps", str(c["warmup"]), "--total-steps", str(c["total"]),
              "--min-lr-ratio", "0"]
    return f


# --------------------------------------------------------------------------
# prepare (no torch, no numpy)

def read_safetensors_raw(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return header, data[8 + n:]


def write_safetensors_subset(src, dst, names):
    header, body = read_safetensors_raw(src)
    out_header, chunks, offset = {}, [], 0
    for name in names:
        h = header[name]
        a, b = h["data_offsets"]
        chunks.append(body[a:b])
        out_header[name] = {"dtype": h["dtype"], "shape": h["shape"],
                            "data_offsets": [offset, offset + (b - a)]}
        offset += b - a
    hb = json.dumps(out_header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(chunks))


def prepare(args):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    oracles = os.path.join(here, "test", "data", "oracles")
    bin_dir = os.path.abspath(args.bin or os.path.join(here, "build", "bin"))
    out = os.path.abspath(args.dir)
    os.makedirs(out, exist_ok=True)
    manifest = {"steps": args.steps, "archs": {}, "runs": []}
    probes = {}
    for spec in args.probe or []:
        run, _, ks = spec.partition(":")
        probes[run] = [int(k) for k in ks.split(",") if k]
        if not all(0 < k < args.steps for k in probes[run]):
            sys.exit(f"prepare: --probe {spec}: steps must be in [1, {args.steps})")
    for arch in ARCHS:
        shutil.copyfile(os.path.join(oracles, f"{arch}-train.oracle.json"),
                        os.path.join(out, f"{arch}.oracle.json"))
        write_safetensors_subset(os.path.join(oracles, f"{arch}-train.oracle.safetensors"),
                                 os.path.join(out, f"{arch}.batches.safetensors"),
                                 ["input_ids", "labels"])
        init_hash = None
        for name, (desc, cfg, _, _) in CONFIGS.items():
            work = tempfile.mkdtemp(prefix="verify_optimizers.")
            try:
                plan = os.path.join(work, "model.cplan")
                flags = compile_flags(cfg) + ARCH_FLAGS[arch]
                cmd = [os.path.join(bin_dir, "colossal-opt"), "compile",
                       os.path.join(oracles, f"{arch}-train.torchscript.onnx"), "-o", plan] + flags
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"prepare: {arch}.{name}: compile failed:\n{r.stderr}{r.stdout}")
                step_line = next((l.strip() for l in r.stdout.splitlines() + r.stderr.splitlines()
                                  if l.strip().startswith("step:")), "")
                weights = os.path.join(work, "model.weights.safetensors")
                with open(weights, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
                if init_hash is None:
                    init_hash = h
                    shutil.copyfile(weights, os.path.join(out, f"{arch}.init.safetensors"))
                elif h != init_hash:
                    sys.exit(f"prepare: {arch}.{name}: the weights file differs from the first "
                             "configuration's")
                metrics = f"{arch}.{name}.metrics.jsonl"
                cmd = [os.path.join(bin_dir, "colossal-run"), plan,
                       "--batches", os.path.join(out, f"{arch}.batches.safetensors"),
                       "--steps", str(args.steps), "--metrics", os.path.join(out, metrics)]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode:
                    sys.exit(f"prepare: {arch}.{name}: colossal-run failed:\n{r.stderr}")
                # The weights colossal trains at step k (after k updates), for --probe.
                exports = {}
                for k in probes.get(f"{arch}.{name}", []):
                    exports[str(k)] = f"{arch}.{name}.W{k}.safetensors"
                    cmd = [os.path.join(bin_dir, "colossal-run"), plan,
                           "--batches", os.path.join(out, f"{arch}.batches.safetensors"),
                           "--steps", str(k), "--export-weights",
                           os.path.join(out, exports[str(k)])]
                    r = subprocess.run(cmd, capture_output=True, text=True)
                    if r.returncode:
                        sys.exit(f"prepare: {arch}.{name}: --export-weights at {k} failed:\n"
                                 f"{r.stderr}")
            finally:
                shutil.rmtree(work, ignore_errors=True)
            with open(os.path.join(out, metrics)) as f:
                rows = [json.loads(l) for l in f if l.strip()]
            print(f"prepare: {arch}.{name}: {step_line}; loss {rows[0]['loss']:.6g} -> "
                  f"{rows[-1]['loss']:.6g}")
            manifest["runs"].append({"arch": arch, "config": name, "description": desc,
                                     "cfg": cfg, "flags": flags, "compile_summary": step_line,
                                     "metrics": metrics, "probe_weights": exports})
        manifest["archs"][arch] = {"init": f"{arch}.init.safetensors",
                                   "batches": f"{arch}.batches.safetensors",
                                   "oracle": f"{arch}.oracle.json",
                                   "onnx": f"test/data/oracles/{arch}-train.torchscript.onnx"}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"prepare: wrote {out}/manifest.json ({len(manifest['runs'])} runs)")
    return 0


# --------------------------------------------------------------------------
# device (torch, transformers, safetensors)

def build_model(torch, transformers, oracle, init_path, dtype=None):
    from safetensors.torch import load_file
    cls = getattr(transformers, oracle["hf_class"])
    config = cls.config_class.from_dict(dict(oracle["model_config"]))
    config.use_cache = False
    torch.manual_seed(0)  # every parameter is overwritten below
    try:
        model = cls._from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = cls(config)
    model = model.float()
    init = load_file(init_path)
    # The torchscript export names every parameter `model.<HF name>` (the
    # compile's weights file); --export-weights writes the HF names.
    names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    sd = {}
    for n, t in init.items():
        sd[n[len("model."):] if n not in names and n.startswith("model.") else n] = t
    missing, unexpected = model.load_state_dict(sd, strict=False)
    params = dict(model.named_parameters())  # tied weights once, under the first name
    all_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    bad_missing = [n for n in missing if n in params]  # a tied alias is not in params
    if unexpected or bad_missing or set(params) != set(sd):
        raise RuntimeError(f"weights do not match the model: unexpected {unexpected}, missing "
                           f"{bad_missing}, trained-but-absent {sorted(set(params) - set(sd))}, "
                           f"absent-from-model {sorted(set(sd) - set(params))}")
    for n, p in params.items():
        if not torch.equal(p.detach(), sd[n]):
            raise RuntimeError(f"{n} differs after loading")
    ties = sorted(all_names - set(params))
    if dtype is not None:
        model = model.to(dtype)
        params = dict(model.named_parameters())
    model.train()  # every dropout and layerdrop is 0 in these configs
    return model, params, ties


def model_loss(torch, model, ids, labels, kw, own_loss):
    if not own_loss:
        return model(input_ids=ids, labels=labels, **kw).loss
    # HF's loss casts the logits to f32; an f64 reference computes it in f64:
    # the same mean cross-entropy of the shifted labels.
    logits = model(input_ids=ids, **kw).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
        ignore_index=-100)


def relu_inputs(model):
    """Hooks collecting the inputs of OPT's ReLUs (the fc1 outputs)."""
    seen, hooks = [], []
    for n, m in model.named_modules():
        if n.endswith("fc1"):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o: seen.append(o.detach().double().flatten())))
    return seen, hooks


def torch_run(torch, transformers, arch_info, cfg, steps, base, dtype=None, capture=()):
    """Per-step (loss, grad_norm, lr) of the PyTorch run, the no-decay names,
    and for each step in `capture` the weights it trains."""
    from safetensors.torch import load_file
    oracle = arch_info["oracle_doc"]
    own_loss = dtype is not None and dtype != torch.float32
    model, params, _ = build_model(torch, transformers, oracle,
                                   os.path.join(base, arch_info["init"]), dtype)
    b = load_file(os.path.join(base, arch_info["batches"]))
    ids_all, labels_all = b["input_ids"].long(), b["labels"].long()
    rx = re.compile(cfg["no_decay"]) if cfg["no_decay"] else None
    decay, no_decay, no_decay_names = [], [], []
    for n, p in params.items():
        if rx and rx.search("model." + n):
            no_decay.append(p)
            no_decay_names.append("model." + n)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": cfg["weight_decay"]}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"],
                              dampening=cfg["dampening"], nesterov=cfg["nesterov"])
    else:
        opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])
    sched = None
    if cfg["schedule"] == "cosine":
        try:
            cosine = transformers.get_cosine_schedule_with_warmup
        except AttributeError:
            from transformers.optimization import get_cosine_schedule_with_warmup as cosine
        sched = cosine(opt, cfg["warmup"], cfg["total"])
    plist = list(params.values())
    use_mask = oracle.get("wrapper_note") and "attention_mask" in oracle["wrapper_note"]
    rows, captured = [], {}
    for k in range(steps):
        ids, labels = ids_all[k % ids_all.shape[0]], labels_all[k % labels_all.shape[0]]
        kw = {"attention_mask": torch.ones_like(ids)} if use_mask else {}
        if k in capture:
            captured[k] = {n: p.detach().clone() for n, p in params.items()}
        opt.zero_grad(set_to_none=True)
        loss = model_loss(torch, model, ids, labels, kw, own_loss)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(plist, cfg["clip"] if cfg["clip"] else math.inf)
        lr = opt.param_groups[0]["lr"]
        if any(g["lr"] != lr for g in opt.param_groups):
            raise RuntimeError("param groups disagree on lr")
        opt.step()
        if sched is not None:
            sched.step()
        rows.append((float(loss.detach()), float(gn), float(lr)))
    if capture:
        return rows, no_decay_names, captured
    return rows, no_decay_names


def grads_at(torch, transformers, arch_info, weights, k, base):
    """Loss, grad norm, gradients and ReLU inputs of PyTorch (f32) at given weights, batch k."""
    from safetensors.torch import load_file, save_file
    oracle = arch_info["oracle_doc"]
    if isinstance(weights, dict):  # a captured state: through a temporary file
        fd, path = tempfile.mkstemp(suffix=".safetensors")
        os.close(fd)
        save_file({n: t.contiguous() for n, t in weights.items()}, path)
    else:
        path = weights
    try:
        model, params, _ = build_model(torch, transformers, oracle, path)
    finally:
        if isinstance(weights, dict):
            os.unlink(path)
    b = load_file(os.path.join(base, arch_info["batches"]))
    ids, labels = b["input_ids"][k % 4].long(), b["labels"][k % 4].long()
    note = oracle.get("wrapper_note") or ""
    kw = {"attention_mask": torch.ones_like(ids)} if "attention_mask" in note else {}
    seen, hooks = relu_inputs(model)
    loss = model(input_ids=ids, labels=labels, **kw).loss
    loss.backward()
    for h in hooks:
        h.remove()
    gn = torch.nn.utils.clip_grad_norm_(list(params.values()), math.inf)
    return (float(loss.detach()), float(gn), {n: p.grad.detach().clone() for n, p in params.items()},
            {n: p.detach().clone() for n, p in params.items()},
            torch.cat(seen) if seen else torch.zeros(0, dtype=torch.float64))


def probe(torch, transformers, base, steps, arch_info, run, ours, ref):
    """Why colossal and PyTorch part at a step: the weights each trains there,
    the gradient PyTorch computes at colossal's weights, and the ReLU inputs
    whose sign differs; and both f32 runs against an f64 PyTorch run."""
    from safetensors.torch import load_file  # noqa: F401
    cfg = run["cfg"]
    ks = sorted(int(k) for k in run["probe_weights"])
    _, _, captured = torch_run(torch, transformers, arch_info, cfg, steps, base, capture=set(ks))
    out = {"steps": {}}
    for k in ks:
        c_loss, c_gn, c_grads, c_w, c_relu = grads_at(
            torch, transformers, arch_info, os.path.join(base, run["probe_weights"][str(k)]), k,
            base)
        t_loss, t_gn, t_grads, t_w, t_relu = grads_at(torch, transformers, arch_info,
                                                      captured[k], k, base)
        wdiff = max(float((c_w[n] - t_w[n]).abs().max()) for n in c_w)
        wscale = max(float(t_w[n].abs().max()) for n in t_w)
        per_param = sorted(((float((c_grads[n] - t_grads[n]).norm()), n) for n in c_grads),
                           reverse=True)
        flips = (c_relu > 0) != (t_relu > 0)
        nflip = int(flips.sum())
        rec = {
            "weights_max_abs_diff": wdiff, "weights_max_abs": wscale,
            "colossal_metrics_loss": ours[k]["loss"], "colossal_metrics_grad_norm":
                ours[k]["grad_norm"],
            "torch_at_colossal_weights_loss": c_loss, "torch_at_colossal_weights_grad_norm": c_gn,
            "torch_run_loss": t_loss, "torch_run_grad_norm": t_gn,
            "grad_diff_norm": math.sqrt(sum(x * x for x, _ in per_param)),
            "grad_diff_top": [[n, x] for x, n in per_param[:4]],
            "relu_inputs": int(c_relu.numel()), "relu_sign_flips": nflip,
            "relu_flip_max_abs_input": (float(torch.maximum(c_relu[flips].abs(),
                                                            t_relu[flips].abs()).max())
                                        if nflip else None),
            "relu_inputs_below_1e-5": int((t_relu.abs() < 1e-5).sum()),
        }
        out["steps"][str(k)] = rec
        print(f"  probe {run['arch']}.{run['config']} step {k}: weights differ by at most "
              f"{wdiff:.1e} (max |w| {wscale:.2f}); PyTorch at colossal's weights: loss "
              f"{c_loss:.9g} grad_norm {c_gn:.9g} (colossal's metrics {ours[k]['loss']:.9g} "
              f"{ours[k]['grad_norm']:.9g}); PyTorch's own run: loss {t_loss:.9g} grad_norm "
              f"{t_gn:.9g}; gradients differ by {rec['grad_diff_norm']:.2e} (most: "
              f"{', '.join(f'{n} {x:.1e}' for n, x in rec['grad_diff_top'][:3])}); ReLU inputs "
              f"of opposite sign {nflip} of {c_relu.numel()} (largest |input| among them "
              f"{rec['relu_flip_max_abs_input'] if nflip else 0:.1e}; {rec['relu_inputs_below_1e-5']}"
              f" inputs below 1e-5)")
    # Both f32 runs against f64.
    ref64, _ = torch_run(torch, transformers, arch_info, cfg, steps, base, dtype=torch.float64)
    for who, rows in (("colossal", [(o["loss"], o["grad_norm"]) for o in ours]),
                      ("torch_f32", [(r[0], r[1]) for r in ref])):
        le = [abs(a[0] - b[0]) / abs(b[0]) for a, b in zip(rows, ref64)]
        ge = [abs(a[1] - b[1]) / abs(b[1]) for a, b in zip(rows, ref64)]
        out[f"{who}_vs_f64"] = {"loss_rel_err": le, "grad_norm_rel_err": ge}
        print(f"  probe {run['arch']}.{run['config']}: {who} against PyTorch f64: loss rel err "
              f"by 5 steps {', '.join(f'{x:.0e}' for x in blocks(le))}; grad_norm rel err by 5 "
              f"steps {', '.join(f'{x:.0e}' for x in blocks(ge))}")
    return out


def blocks(errs, width=5):
    return [max(errs[i:i + width]) for i in range(0, len(errs), width)]


def device(args):
    try:
        import torch
        import transformers
        import safetensors  # noqa: F401
    except ImportError as e:
        print(f"verify_optimizers: error: needs torch, transformers and safetensors: {e}",
              file=sys.stderr)
        return 2
    torch.set_num_threads(4)
    torch.use_deterministic_algorithms(True, warn_only=True)
    base = os.path.abspath(args.dir)
    with open(os.path.join(base, "manifest.json")) as f:
        manifest = json.load(f)
    steps = manifest["steps"]
    archs = manifest["archs"]
    for a in archs.values():
        with open(os.path.join(base, a["oracle"])) as f:
            a["oracle_doc"] = json.load(f)
    print(f"verify_optimizers: python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, cpu fp32, {torch.get_num_threads()} threads")
    for arch, a in archs.items():
        _, _, ties = build_model(torch, transformers, a["oracle_doc"],
                                 os.path.join(base, a["init"]))
        print(f"verify_optimizers: {arch}: {a['oracle_doc']['hf_class']} loads "
              f"{a['init']} (tied aliases re-tied: {ties or 'none'})")

    results, failed = [], 0
    for run in manifest["runs"]:
        arch, name, cfg = run["arch"], run["config"], run["cfg"]
        _, _, control_desc, control = CONFIGS[name]
        with open(os.path.join(base, run["metrics"])) as f:
            ours = [json.loads(l) for l in f if l.strip()]
        try:
            ref, nd_names = torch_run(torch, transformers, archs[arch], cfg, steps, base)
        except Exception:  # report every run, whatever breaks
            traceback.print_exc()
            print(f"verify_optimizers: {arch}.{name}: FAIL: the PyTorch run broke")
            failed += 1
            continue
        loss_err = [abs(o["loss"] - r[0]) / abs(r[0]) for o, r in zip(ours, ref)]
        gn_err = [abs(o["grad_norm"] - r[1]) / abs(r[1]) for o, r in zip(ours, ref)]
        lr_err = [abs(o["lr"] - r[2]) for o, r in zip(ours, ref)]
        res = {
            "arch": arch, "config": name, "description": run["description"],
            "flags": run["flags"], "steps": len(ours),
            "no_decay_params_torch": nd_names,
            "colossal": [[o["loss"], o["grad_norm"], o["lr"]] for o in ours],
            "torch": [list(r) for r in ref],
            "loss_rel_err": loss_err, "grad_norm_rel_err": gn_err, "lr_abs_err": lr_err,
            "max_loss_rel_err": max(loss_err), "max_loss_rel_err_step": loss_err.index(max(loss_err)),
            "loss_rel_err_by_5_steps": blocks(loss_err),
            "max_grad_norm_rel_err": max(gn_err), "max_lr_abs_err": max(lr_err),
        }
        ok = (len(ours) == steps and res["max_loss_rel_err"] <= LOSS_RTOL
              and res["max_grad_norm_rel_err"] <= GRAD_NORM_RTOL
              and res["max_lr_abs_err"] <= LR_ATOL)
        if control is not None:
            ccfg = dict(cfg)
            ccfg.update(control)
            cref, _ = torch_run(torch, transformers, archs[arch], ccfg, steps, base)
            res["control"] = control_desc
            res["control_max_loss_rel_dist"] = max(abs(o["loss"] - r[0]) / abs(r[0])
                                                   for o, r in zip(ours, cref))
        oracle_losses = archs[arch]["oracle_doc"]["losses"]
        if name == "O":  # our PyTorch harness against the oracle's own PyTorch run
            res["torch_vs_oracle_max_loss_rel_err"] = max(
                abs(r[0] - x) / abs(x) for r, x in zip(ref, oracle_losses))
            ok = ok and res["torch_vs_oracle_max_loss_rel_err"] <= LOSS_RTOL
        res["ok"] = ok
        failed += not ok
        results.append(res)
        extra = (f"; control ({res['control']}) {res['control_max_loss_rel_dist']:.1e}"
                 if "control" in res else "")
        if nd_names:
            extra += f"; {len(nd_names)} tensors without decay"
        if "torch_vs_oracle_max_loss_rel_err" in res:
            extra += f"; torch vs oracle json {res['torch_vs_oracle_max_loss_rel_err']:.1e}"
        print(f"verify_optimizers: {arch}.{name}: {'ok' if ok else 'FAIL'}: loss "
              f"{ours[0]['loss']:.6g} -> {ours[-1]['loss']:.6g}, max rel err "
              f"{res['max_loss_rel_err']:.1e} (step {res['max_loss_rel_err_step']}; by 5 steps "
              f"{', '.join(f'{x:.0e}' for x in res['loss_rel_err_by_5_steps'])}); grad_norm "
              f"{res['max_grad_norm_rel_err']:.1e}; lr {res['max_lr_abs_err']:.1e}{extra}")
        if not ok:
            for k, (o, r) in enumerate(zip(ours, ref)):
                print(f"  step {k}: colossal loss {o['loss']:.9g} gn {o['grad_norm']:.9g} "
                      f"lr {o['lr']:.9g} | torch loss {r[0]:.9g} gn {r[1]:.9g} lr {r[2]:.9g}")
        if run.get("probe_weights"):
            try:
                res["probe"] = probe(torch, transformers, base, steps, archs[arch], run, ours, ref)
            except Exception:  # the probe explains; it does not decide
                traceback.print_exc()

    table = ["| oracle | config | loss 0 -> 19 | worst loss rel err (step) | by steps 0-4, 5-9, 10-14, 15-19 | worst grad_norm rel err | worst lr abs err | control: loss rel gap |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r["colossal"]
        ctl = (f"{r['control']}: {r['control_max_loss_rel_dist']:.1e}" if "control" in r
               else f"torch vs oracle json: {r['torch_vs_oracle_max_loss_rel_err']:.1e}")
        table.append(
            f"| {r['arch']} | {r['config']} | {c[0][0]:.4f} -> {c[-1][0]:.4f} | "
            f"{r['max_loss_rel_err']:.1e} ({r['max_loss_rel_err_step']}) | "
            f"{' '.join(f'{x:.0e}' for x in r['loss_rel_err_by_5_steps'])} | "
            f"{r['max_grad_norm_rel_err']:.1e} | {r['max_lr_abs_err']:.0e} | {ctl} |")
    print("\n".join(table))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(table) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "transformers": transformers.__version__,
                       "results": results}, f, indent=1)
            f.write("\n")
    print(f"verify_optimizers: {len(results) - failed} of {len(results)} runs pass")
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="run colossal (here)")
    p.add_argument("dir")
    p.add_argument("--bin", help="folder with colossal-opt and colossal-run (build/bin)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--probe", action="append", metavar="ARCH.CONFIG:K[,K]",
                   help="also export colossal's weights at step K (before its update) for "
                        "the device half's probe of that run")
    d = sub.add_parser("device", help="run PyTorch and compare (where torch is)")
    d.add_argument("dir")
    d.add_argument("--json")
    d.add_argument("--markdown")
    args = ap.parse_args(argv)
    return prepare(args) if args.cmd == "prepare" else device(args)


if __name__ == "__main__":
    sys.exit(main())
