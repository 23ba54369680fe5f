#===- export.py - Export a tiny Hugging Face model with its loss to ONNX ---===#
"""Export a tiny Hugging Face model, wrapped to return its loss, to ONNX.

Usage (from the repository root):

    PYTHONPATH=python python3 -m colossal.export --arch qwen2 --exporter dynamo \\
        [--dynamic] [--out DIR] [--batch 2 --seq 16]

writes DIR/<arch>-tiny.<exporter>[.dynamic].onnx and the .json beside it, in
the schema of test/data/models/*.json (read by test/Inputs/check_fixture.py).

The model (see test/data/models/README.md): the arch's Hugging Face config
class with hidden 64, 2 layers, 4 heads (2 key/value heads for the archs whose
published models use grouped-query attention: Qwen2, Mistral), vocab 512, 128
positions, intermediate 256, fp32, dropout 0, ``torch.manual_seed(0)`` right
before the model is built, eval mode, eager attention, no KV cache. A wrapper
gives it the signature ``forward(input_ids, labels) -> (loss, logits)`` where
``loss`` is the model's own Hugging Face loss:

* causal LMs: mean cross-entropy over labels != -100, labels shifted by one
  inside the model. Labels are the input ids with ``labels[0, :3] = -100``.
* BERT (``BertForMaskedLM``): mean cross-entropy over the masked positions, no
  shift. Masking is deterministic: the positions whose row-major index
  ``b * seq + s`` is 3 mod 7 (5 of 32 = 15.6% at 2 x 16, 5 of 36 at 3 x 12)
  are masked; their label is the original id and their input id becomes 103
  (``[MASK]`` in bert-base-uncased's vocabulary, which fits in 512). Every
  other label is -100.

Input ids are one stream ``torch.randint(0, 512, (n,), generator)`` from a
``torch.Generator`` seeded with 1234, cut row-major into each case. A static
export has one case (batch x seq); a ``--dynamic`` export has a second one,
(batch + 1) x (seq * 3 // 4) (3 x 12 by default), taken from the same stream.
For opt, gpt2 and llama the model (config, weights, graph) is the one of the
shared fixtures in test/data/models, but their input ids came from another,
unrecorded stream, so a re-export has other inputs and another torch_loss.

Exporters, exactly as the shared fixtures were made:

* ``torchscript``: ``torch.onnx.export(dynamo=False, opset_version=17,
  do_constant_folding=True)``; ``--dynamic`` adds ``dynamic_axes`` naming the
  batch and seq axes of input_ids, labels and logits. For every arch but OPT the
  wrapper passes ``attention_mask=torch.ones_like(input_ids)``: without a mask
  transformers 5 calls ``torch.diff``, which that exporter cannot export. The
  graph inputs stay (input_ids, labels) and the loss is unchanged.
* ``dynamo``: ``torch.onnx.export(dynamo=True, external_data=False)``;
  ``--dynamic`` adds ``dynamic_shapes`` with ``batch = Dim(1..64)`` and
  ``seq = Dim(2..128)``.

The .json records PyTorch's loss and logits statistics for each case and, when
onnxruntime is installed, what onnxruntime computes from the written file
(``cases[i].ort``). Exit status: 0 on success; 1 when the export fails or
onnxruntime disagrees with PyTorch (loss beyond 1e-5 relative, the tolerance of
check_fixture.py; the files are written anyway); 2 on bad usage or a missing
package.

This module imports without torch: torch, transformers, onnx and onnxruntime
are imported when ``main`` runs.
"""

import argparse
import json
import os
import sys
import traceback

VOCAB = 512
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS_GQA = 2
MAX_POSITIONS = 128
INTERMEDIATE = 256

MODEL_SEED = 0
INPUTS_SEED = 1234
CAUSAL_IGNORED_PREFIX = 3          # labels[0, :3] = -100 in causal LMs
BERT_MASK_TOKEN_ID = 103           # [MASK] in bert-base-uncased
BERT_MASK_EVERY, BERT_MASK_PHASE = 7, 3
DYNAMIC_BATCH_RANGE = (1, 64)
DYNAMIC_SEQ_MIN = 2
ORT_LOSS_RTOL = 1e-5               # check_fixture.py's tolerance on the loss

# The common tiny sizes in the generic config names.
_COMMON = dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
               num_attention_heads=HEADS, intermediate_size=INTERMEDIATE,
               max_position_embeddings=MAX_POSITIONS, use_cache=False)

# arch -> (model class, config class, task, config kwargs, note).
# Token ids (pad/bos/eos) stay at the config's defaults, except where the
# shared fixtures set them (llama: pad 0; gpt2: bos = eos = 0), so that opt,
# gpt2 and llama rebuild the shared fixtures' weights exactly.
ARCHS = {
    "bert": ("BertForMaskedLM", "BertConfig", "masked-lm",
             dict(_COMMON, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
             "encoder; tied decoder; type_vocab_size 2, token_type_ids default to 0"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", "causal-lm",
              dict(_COMMON, num_key_value_heads=KV_HEADS_GQA),
              "grouped-query attention (2 key/value heads), q/k/v biases"),
    "mistral": ("MistralForCausalLM", "MistralConfig", "causal-lm",
                dict(_COMMON, num_key_value_heads=KV_HEADS_GQA),
                "grouped-query attention (2 key/value heads), sliding_window 4096 (> seq)"),
    "gpt_neox": ("GPTNeoXForCausalLM", "GPTNeoXConfig", "causal-lm",
                 dict(_COMMON, hidden_dropout=0.0, attention_dropout=0.0),
                 "parallel residual, fused qkv, partial rotary (25%)"),
    "phi": ("PhiForCausalLM", "PhiConfig", "causal-lm",
            dict(_COMMON, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0),
            "parallel attention + MLP, partial rotary (50%), gelu_new"),
    "opt": ("OPTForCausalLM", "OPTConfig", "causal-lm",
            dict(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                 num_attention_heads=HEADS, ffn_dim=INTERMEDIATE,
                 max_position_embeddings=MAX_POSITIONS, word_embed_proj_dim=HIDDEN,
                 dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 use_cache=False),
            "tied embedding, learned positions (offset 2)"),
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", "causal-lm",
             dict(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                  n_inner=INTERMEDIATE, n_positions=MAX_POSITIONS, resid_pdrop=0.0,
                  embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                  use_cache=False),
             "tied embedding, Conv1D (Gemm) projections"),
    "llama": ("LlamaForCausalLM", "LlamaConfig", "causal-lm",
              dict(_COMMON, num_key_value_heads=HEADS, pad_token_id=0),
              "RMSNorm, rotary, SwiGLU"),
}

MODE = "eval (dropout off), use_cache=False, attn_implementation=eager"
MASK_WORKAROUND = (
    "legacy exporter only: the wrapper passes attention_mask=torch.ones_like(input_ids) to the "
    "model. Without a mask, transformers 5 masking_utils.find_packed_sequence_indices calls "
    "torch.diff on position_ids, and aten::diff has no TorchScript-ONNX symbolic ('Exporting "
    "the operator aten::diff to ONNX opset version 17 is not supported'). The graph inputs stay "
    "(input_ids, labels); the loss is unchanged (all-ones mask).")
BERT_MASKING = (
    f"deterministic masked-LM batch: positions whose row-major index b*seq+s is "
    f"{BERT_MASK_PHASE} mod {BERT_MASK_EVERY} are masked (~15%: 5 of 32 at 2x16); there the "
    f"label is the original id and the input id is replaced by {BERT_MASK_TOKEN_ID} ([MASK] in "
    f"bert-base-uncased); all other labels are -100")


class ExportError(Exception):
    """The export or its check failed (exit 1)."""


class UsageError(Exception):
    """Bad arguments or a missing package (exit 2)."""


def fixture_name(arch, exporter, dynamic):
    """'qwen2', 'dynamo', True -> 'qwen2-tiny.dynamo.dynamic'."""
    return f"{arch}-tiny.{exporter}" + (".dynamic" if dynamic else "")


def needs_mask_workaround(arch, exporter):
    return exporter == "torchscript" and arch != "opt"


def case_shapes(batch, seq, dynamic):
    """[(batch, seq)] of the cases: one, or two for a dynamic export."""
    shapes = [(batch, seq)]
    if dynamic:
        shapes.append((batch + 1, max(DYNAMIC_SEQ_MIN, seq * 3 // 4)))
    return shapes


def how_string(exporter, dynamic, max_seq):
    if exporter == "torchscript":
        how = "torch.onnx.export(dynamo=False, opset_version=17, do_constant_folding=True"
        return how + (", dynamic_axes={batch,seq})" if dynamic else ")")
    how = "torch.onnx.export(dynamo=True, external_data=False"
    if dynamic:
        lo, hi = DYNAMIC_BATCH_RANGE
        how += f", dynamic_shapes={{batch:Dim({lo}..{hi}), seq:Dim({DYNAMIC_SEQ_MIN}..{max_seq})}}"
    return how + ")"


def wrapper_string(arch, task, exporter):
    s = ("forward(input_ids, labels) -> (loss, logits); loss = HF model loss (mean cross-entropy "
         "over labels != -100; causal LMs shift labels by one)")
    if task == "masked-lm":
        s += "; BertForMaskedLM: no shift, labels are -100 except at the masked positions"
    if needs_mask_workaround(arch, exporter):
        s += " + attention_mask=ones_like(input_ids) inside the wrapper"
    return s


def describe_onnx(path):
    """Graph facts for the .json: opset, inputs, outputs, op histogram (needs onnx)."""
    import onnx
    m = onnx.load(path, load_external_data=False)
    opset = {}
    for o in m.opset_import:
        opset["ai.onnx" if o.domain in ("", "ai.onnx") else o.domain] = o.version

    def vinfo(vi):
        dims = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                dims.append(d.dim_value)
            elif d.HasField("dim_param"):
                dims.append(d.dim_param)
            else:
                dims.append(None)
        return {"name": vi.name, "elem_type": vi.type.tensor_type.elem_type, "shape": dims}

    inits = {t.name for t in m.graph.initializer}
    counts = {}
    for n in m.graph.node:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        counts[key] = counts.get(key, 0) + 1
    # Most frequent first, ties by name, so the histogram is deterministic.
    histogram = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return {
        "opset": opset,
        "graph_inputs": [vinfo(vi) for vi in m.graph.input if vi.name not in inits],
        "graph_outputs": [vinfo(vi) for vi in m.graph.output],
        "op_histogram": histogram,
    }


def logits_stats(logits):
    """{sum, abs_max, first8} of a numpy array, in float64 (as check_fixture.py compares)."""
    import numpy as np
    flat = np.asarray(logits, dtype=np.float64).reshape(-1)
    return {"sum": float(flat.sum()), "abs_max": float(np.abs(flat).max()),
            "first8": [float(x) for x in flat[:8]]}


def check_with_ort(path, cases):
    """Run every case through onnxruntime; return [{loss, loss_abs_diff, logits_max_abs_diff}]."""
    import numpy as np
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    results = []
    for case, ref_logits in cases:
        feeds = {k: np.array(v["data"], dtype=np.dtype(v["dtype"]))
                 for k, v in case["inputs"].items()}
        loss, logits = sess.run(["loss", "logits"], feeds)
        loss = float(np.asarray(loss).reshape(()))
        results.append({
            "loss": loss,
            "loss_abs_diff": abs(loss - case["torch_loss"]),
            "logits_max_abs_diff": float(np.abs(logits.astype(np.float64)
                                                - ref_logits.astype(np.float64)).max()),
        })
    return results


def _import_stack():
    try:
        import torch
        import transformers
        import onnx
    except ImportError as e:
        raise UsageError(f"needs torch, transformers and onnx (onnxscript too for --exporter "
                         f"dynamo): {e}")
    return torch, transformers, onnx


def build_model(arch, exporter):
    """(wrapper module in eval mode, HF model) for ARCHS[arch]."""
    torch, transformers, _ = _import_stack()
    model_cls_name, config_cls_name, task, kwargs, _ = ARCHS[arch]
    try:
        model_cls = getattr(transformers, model_cls_name)
        config_cls = getattr(transformers, config_cls_name)
    except AttributeError:
        raise UsageError(f"transformers {transformers.__version__} has no {model_cls_name} or "
                         f"{config_cls_name}")
    config = config_cls(**kwargs)
    torch.manual_seed(MODEL_SEED)
    try:
        model = model_cls._from_config(config, attn_implementation="eager")
    except TypeError:  # an older transformers without the keyword
        config._attn_implementation = "eager"
        model = model_cls(config)
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl != "eager":
        raise ExportError(f"{model_cls_name} was built with attn_implementation={impl!r}, "
                          f"expected 'eager'")
    model = model.float().eval()

    pass_mask = needs_mask_workaround(arch, exporter)

    class LossWrapper(torch.nn.Module):
        """forward(input_ids, labels) -> (HF loss, logits)."""

        def __init__(self, inner):
            super().__init__()
            self.model = inner

        def forward(self, input_ids, labels):
            kw = {}
            if pass_mask:
                kw["attention_mask"] = torch.ones_like(input_ids)
            out = self.model(input_ids=input_ids, labels=labels, **kw)
            return out.loss, out.logits

    return LossWrapper(model).eval(), model


def make_cases(task, shapes):
    """[{'inputs': {input_ids, labels}}] with int64 tensors, for each (batch, seq)."""
    torch = _import_stack()[0]
    total = sum(b * s for b, s in shapes)
    gen = torch.Generator().manual_seed(INPUTS_SEED)
    stream = torch.randint(0, VOCAB, (total,), generator=gen, dtype=torch.int64)
    cases = []
    for b, s in shapes:
        # Every case starts at the beginning of the stream, so case 0 of a
        # dynamic export equals the static export's case.
        ids = stream[:b * s].clone().view(b, s)
        if task == "masked-lm":
            idx = torch.arange(b * s).view(b, s)
            masked = (idx % BERT_MASK_EVERY) == BERT_MASK_PHASE
            labels = torch.where(masked, ids, torch.full_like(ids, -100))
            ids = torch.where(masked, torch.full_like(ids, BERT_MASK_TOKEN_ID), ids)
        else:
            labels = ids.clone()
            labels[0, :CAUSAL_IGNORED_PREFIX] = -100
        cases.append((ids, labels))
    return cases


def tensor_json(t):
    return {"shape": list(t.shape), "dtype": "int64", "data": t.tolist()}


def export(args):
    """Export one fixture; return the path of the .json written."""
    torch, transformers, onnx = _import_stack()
    arch, exporter, dynamic = args.arch, args.exporter, args.dynamic
    model_cls_name, _, task, _, note = ARCHS[arch]
    if args.seq > MAX_POSITIONS or args.seq < DYNAMIC_SEQ_MIN or args.batch < 1:
        raise UsageError(f"--batch must be >= 1 and --seq in [{DYNAMIC_SEQ_MIN}, {MAX_POSITIONS}], "
                         f"got {args.batch} x {args.seq}")
    name = fixture_name(arch, exporter, dynamic)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, name + ".onnx")
    json_path = os.path.join(args.out, name + ".json")

    wrapper, model = build_model(arch, exporter)
    shapes = case_shapes(args.batch, args.seq, dynamic)
    tensors = make_cases(task, shapes)

    cases, ref_logits = [], []
    with torch.no_grad():
        for ids, labels in tensors:
            loss, logits = wrapper(ids, labels)
            ref_logits.append(logits.detach().numpy())
            cases.append({
                "inputs": {"input_ids": tensor_json(ids), "labels": tensor_json(labels)},
                "torch_loss": float(loss),
                "logits_shape": list(logits.shape),
                "logits_stats": logits_stats(logits.detach().numpy()),
            })
        if not all(torch.isfinite(torch.tensor(c["torch_loss"])) for c in cases):
            raise ExportError(f"PyTorch's loss is not finite: {[c['torch_loss'] for c in cases]}")

    ids, labels = tensors[0]
    names = dict(input_names=["input_ids", "labels"], output_names=["loss", "logits"])
    try:
        if exporter == "torchscript":
            axes = None
            if dynamic:
                bs = {0: "batch", 1: "seq"}
                axes = {"input_ids": bs, "labels": bs, "logits": bs}
            torch.onnx.export(wrapper, (ids, labels), onnx_path, dynamo=False, opset_version=17,
                              do_constant_folding=True, dynamic_axes=axes, **names)
        else:
            shapes_arg = None
            if dynamic:
                Dim = torch.export.Dim
                lo, hi = DYNAMIC_BATCH_RANGE
                b = Dim("batch", min=lo, max=hi)
                s = Dim("seq", min=DYNAMIC_SEQ_MIN, max=MAX_POSITIONS)
                shapes_arg = {"input_ids": {0: b, 1: s}, "labels": {0: b, 1: s}}
            torch.onnx.export(wrapper, (ids, labels), onnx_path, dynamo=True,
                              external_data=False, dynamic_shapes=shapes_arg, **names)
    except Exception as e:  # the exporters raise many kinds; report the first line
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(f"{exporter} export of {model_cls_name} failed: "
                          f"{type(e).__name__}: {first}")
    if not os.path.exists(onnx_path):
        raise ExportError(f"the {exporter} exporter returned but wrote no {onnx_path}")

    facts = describe_onnx(onnx_path)
    got_inputs = [g["name"] for g in facts["graph_inputs"]]
    got_outputs = [g["name"] for g in facts["graph_outputs"]]
    if got_inputs != ["input_ids", "labels"] or got_outputs != ["loss", "logits"]:
        raise ExportError(f"graph has inputs {got_inputs} and outputs {got_outputs}, expected "
                          f"['input_ids', 'labels'] and ['loss', 'logits']")

    versions = {"torch": torch.__version__, "transformers": transformers.__version__,
                "onnx": onnx.__version__, "onnxruntime": None}
    ort_problem = None
    if not args.no_ort:
        try:
            import onnxruntime
            versions["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            print("colossal.export: warning: onnxruntime is missing; the export is not checked",
                  file=sys.stderr)
        if versions["onnxruntime"]:
            try:
                results = check_with_ort(onnx_path, list(zip(cases, ref_logits)))
            except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
                results = None
                ort_problem = f"onnxruntime cannot run {onnx_path}: {type(e).__name__}: {e}"
            for i, r in enumerate(results or []):
                cases[i]["ort"] = r
                ref = cases[i]["torch_loss"]
                if not r["loss_abs_diff"] <= ORT_LOSS_RTOL * abs(ref):
                    ort_problem = (f"case {i}: onnxruntime's loss {r['loss']!r} differs from "
                                   f"PyTorch's {ref!r} by {r['loss_abs_diff']:.3g} "
                                   f"(> {ORT_LOSS_RTOL:g} relative)")

    doc = {
        "fixture": name + ".onnx",
        "arch": arch,
        "hf_class": model_cls_name,
        "task": task,
        "exporter": exporter,
        "how": how_string(exporter, dynamic, MAX_POSITIONS),
        "dynamic_axes": bool(dynamic),
        "versions": versions,
        "seeds": {"model_init_torch_manual_seed": MODEL_SEED,
                  "inputs_generator_seed": INPUTS_SEED},
        "mode": MODE,
        "wrapper": wrapper_string(arch, task, exporter),
    }
    if needs_mask_workaround(arch, exporter):
        doc["workaround"] = MASK_WORKAROUND
    if task == "masked-lm":
        doc["masking"] = BERT_MASKING
    doc.update({
        "arch_notes": note,
        "num_params": sum(p.numel() for p in model.parameters()),
        "opset": facts["opset"],
        "file_size_bytes": os.path.getsize(onnx_path),
        "graph_inputs": facts["graph_inputs"],
        "graph_outputs": facts["graph_outputs"],
        "op_histogram": facts["op_histogram"],
        "cases": cases,
        "model_config": json.loads(model.config.to_json_string(use_diff=False)),
    })
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    for i, c in enumerate(cases):
        ort_txt = f", onnxruntime {c['ort']['loss']:.9g}" if "ort" in c else ""
        print(f"colossal.export: {name} case {i} {c['logits_shape'][:2]}: "
              f"torch loss {c['torch_loss']:.9g}{ort_txt}")
    print(f"colossal.export: wrote {onnx_path} ({doc['file_size_bytes']} bytes) and {json_path}")
    if ort_problem:
        raise ExportError(ort_problem)
    return json_path


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m colossal.export",
        description="Export a tiny Hugging Face model, wrapped as forward(input_ids, labels) -> "
                    "(loss, logits), to ONNX, with a .json of PyTorch's reference numbers.")
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS),
                    help="model family (built from its config class, tiny sizes)")
    ap.add_argument("--exporter", required=True, choices=["torchscript", "dynamo"],
                    help="torch.onnx.export(dynamo=False, opset 17) or (dynamo=True)")
    ap.add_argument("--dynamic", action="store_true",
                    help="symbolic batch and seq axes (adds a second case)")
    ap.add_argument("--out", default=".", help="output directory (default: .)")
    ap.add_argument("--batch", type=int, default=2, help="batch of case 0 (default 2)")
    ap.add_argument("--seq", type=int, default=16, help="sequence length of case 0 (default 16)")
    ap.add_argument("--no-ort", action="store_true",
                    help="do not check the export with onnxruntime")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        export(args)
    except UsageError as e:
        print(f"colossal.export: error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"colossal.export: error: {fixture_name(args.arch, args.exporter, args.dynamic)}: {e}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
