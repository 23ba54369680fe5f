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

Training exports (``--train``), for ``colossal-opt compile`` to train:

    PYTHONPATH=python python3 -m colossal.export --train \
        (--arch ARCH | --model NAME_OR_PATH) [--exporter dynamo|torchscript] \
        [--dynamic] [--batch 2 --seq 16] [--out DIR] [--name STEM]

* ``--arch`` builds the tiny model above; ``--model`` loads a Hugging Face
  causal LM offline (``AutoModelForCausalLM.from_pretrained(NAME_OR_PATH,
  local_files_only=True)``: a hub name in the local cache or a saved folder),
  or, given a ``config.json``, builds it from that config with random weights
  (``torch.manual_seed(0)``). fp32, eval mode (dropout is not in the graph),
  eager attention, no KV cache, the same wrapper.
* The exporters follow the recipes of ../shared/oracles/README.md, so every
  parameter is a named initializer: ``torchscript`` is
  ``torch.onnx.export(dynamo=False, opset_version=17,
  do_constant_folding=False)``, ``dynamo`` (the default) is
  ``torch.onnx.export(dynamo=True, external_data=False, optimize=False)``.
* The ONNX model gets a model-level ``metadata_props`` entry with key
  ``colossal.export`` whose value is the JSON that ``export_metadata`` builds
  (docs/python.md describes it): the initializers to train, their Hugging Face
  state-dict names, the tie groups, the embeddings' padding rows and the
  model's config.
* Files: DIR/STEM.onnx and DIR/STEM.json (the cases and PyTorch's losses, as
  for a fixture, plus the metadata), STEM defaulting to
  ``<arch or model>-train.<exporter>[.dynamic]``.

This module imports without torch: torch, transformers, onnx and onnxruntime
are imported when ``main`` runs.
"""

import argparse
import contextlib
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

METADATA_KEY = "colossal.export"   # the model-level metadata_props entry of --train
METADATA_FORMAT = 1
WRAPPER_PREFIX = "model."          # LossWrapper keeps the HF model as self.model

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


def train_name(source, exporter, dynamic):
    """'llama' or 'Org/My-Model' or '/x/config.json', 'dynamo', False -> 'llama-train.dynamo'.

    A model path or hub name contributes its last component (a config file:
    its folder's), with every character other than letters, digits, '.',
    '_' and '-' replaced by '_'.
    """
    stem = source.rstrip("/\\")
    if stem.endswith(".json"):
        stem = os.path.dirname(stem) or "config"
    stem = os.path.basename(stem.rstrip("/\\")) or "model"
    stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)
    return f"{stem}-train.{exporter}" + (".dynamic" if dynamic else "")


def strip_prefix(name, prefix=WRAPPER_PREFIX):
    """'model.lm_head.weight' -> 'lm_head.weight' (names without the prefix are kept)."""
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def tied_targets(tied_weights_keys):
    """The Hugging Face names that a model re-ties to another weight.

    ``PreTrainedModel._tied_weights_keys`` is a list of such names in
    transformers 4 and a dict {tied name: source name} in transformers 5
    (``all_tied_weights_keys`` too); None when nothing is tied.
    """
    # Iterating the dict gives its keys, the tied names, as the list does.
    return {str(k) for k in (tied_weights_keys or ())}


def export_metadata(groups, initializers, hf_class, hf_config, tied=(), preferred=(),
                    padding=(), prefix=WRAPPER_PREFIX):
    """The ``colossal.export`` metadata of a training export, and the parameters not in it.

    groups: one list per distinct parameter tensor of the wrapper, in
        ``named_parameters()`` order, holding every name of that tensor
        (``named_parameters(remove_duplicate=False)``): a tied weight has
        several, e.g. ['model.model.decoder.embed_tokens.weight',
        'model.lm_head.weight'].
    initializers: the ONNX graph's initializer names. Each tensor must be
        one initializer under one of its names (torchscript keeps the first
        name, dynamo may pick another use); initializers that are no
        parameter (dynamo's lifted constants and buffers) are not trained.
    tied: Hugging Face names (without the prefix) the model re-ties
        (``tied_targets``); preferred: names that win as the export name of
        their group (the input embedding's), then the first name not in tied.
    padding: (parameter name, padding_idx) of the embeddings with a padding row.

    Returns (metadata dict, [first names of the parameters that are no
    initializer]). Raises ExportError when a tensor is several initializers
    (training them apart would untie them).
    """
    init_set = set(initializers)
    preferred = set(preferred)
    tied = set(tied)
    trainable, export_names, tie_groups, absent = [], {}, {}, []
    by_name = {}
    for names in groups:
        found = [n for n in names if n in init_set]
        if not found:
            absent.append(names[0])
            continue
        if len(found) > 1:
            raise ExportError(f"the tied parameter {names} is {len(found)} initializers "
                              f"{found}; expected one")
        init = found[0]
        hf = [strip_prefix(n, prefix) for n in names]
        best = ([h for h, n in zip(hf, names) if n in preferred or h in preferred]
                or [h for h in hf if h not in tied] or hf)[0]
        trainable.append(init)
        export_names[init] = best
        if len(names) > 1:
            tie_groups[init] = [best] + [h for h in hf if h != best]
        for n in names:
            by_name[n] = init
    pads = {}
    for name, idx in padding:
        if idx is not None and name in by_name:
            pads[by_name[name]] = int(idx)
    meta = {"format": METADATA_FORMAT, "hf_class": hf_class, "wrapper_prefix": prefix,
            "trainable": trainable, "export_names": export_names}
    if pads:
        meta["padding_idx"] = pads
    meta["tied"] = tie_groups
    meta["hf_config"] = hf_config
    return meta, absent


def metadata_json(meta):
    """The metadata_props value: compact JSON, keys in the order built (deterministic)."""
    return json.dumps(meta, separators=(",", ":"))


def read_metadata(model_proto):
    """The parsed ``colossal.export`` entry of an onnx.ModelProto, or None."""
    for prop in model_proto.metadata_props:
        if prop.key == METADATA_KEY:
            return json.loads(prop.value)
    return None


def how_string(exporter, dynamic, max_seq, train=False):
    if exporter == "torchscript":
        how = ("torch.onnx.export(dynamo=False, opset_version=17, do_constant_folding="
               + ("False" if train else "True"))
        return how + (", dynamic_axes={batch,seq})" if dynamic else ")")
    how = "torch.onnx.export(dynamo=True, external_data=False"
    if train:
        how += ", optimize=False"
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
    return wrap(model, needs_mask_workaround(arch, exporter)), model


def wrap(model, pass_mask):
    """LossWrapper(model) in eval mode: forward(input_ids, labels) -> (HF loss, logits)."""
    torch = _import_stack()[0]

    class LossWrapper(torch.nn.Module):
        """forward(input_ids, labels) -> (HF loss, logits)."""

        def __init__(self, inner):
            super().__init__()
            self.model = inner  # hence WRAPPER_PREFIX

        def forward(self, input_ids, labels):
            kw = {}
            if pass_mask:
                kw["attention_mask"] = torch.ones_like(input_ids)
            out = self.model(input_ids=input_ids, labels=labels, **kw)
            return out.loss, out.logits

    return LossWrapper(model).eval()


def load_model(spec):
    """The HF causal LM named by --model, fp32, eval mode, eager attention, no KV cache.

    A ``.json`` file is a config (random weights, ``torch.manual_seed(0)``);
    anything else goes to ``from_pretrained`` offline (local_files_only).
    """
    torch, transformers, _ = _import_stack()
    auto = transformers.AutoModelForCausalLM
    try:
        if spec.endswith(".json") and os.path.isfile(spec):
            with open(spec) as f:
                cfg = json.load(f)
            if "model_type" not in cfg:
                raise UsageError(f"{spec}: a config needs 'model_type'")
            config = transformers.AutoConfig.for_model(**cfg)
            torch.manual_seed(MODEL_SEED)
            model = auto.from_config(config, attn_implementation="eager")
        else:
            kw = dict(local_files_only=True, attn_implementation="eager")
            try:
                model = auto.from_pretrained(spec, dtype=torch.float32, **kw)
            except TypeError:  # transformers 4 names it torch_dtype
                model = auto.from_pretrained(spec, torch_dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load --model {spec!r} offline as a causal LM: {first}")
    model.config.use_cache = False
    impl = getattr(model.config, "_attn_implementation", "eager")
    if impl != "eager":
        raise ExportError(f"{type(model).__name__} was built with attn_implementation={impl!r}, "
                          f"expected 'eager'")
    return model.float().eval()


def make_cases(task, shapes, vocab=VOCAB):
    """[(input_ids, labels)] int64 tensors, one pair for each (batch, seq)."""
    torch = _import_stack()[0]
    total = sum(b * s for b, s in shapes)
    gen = torch.Generator().manual_seed(INPUTS_SEED)
    stream = torch.randint(0, vocab, (total,), generator=gen, dtype=torch.int64)
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


def reference_cases(wrapper, tensors):
    """Run PyTorch on each (ids, labels): (case dicts for the .json, [logits arrays])."""
    torch = _import_stack()[0]
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
    return cases, ref_logits


@contextlib.contextmanager
def dedup_initializers_by_identity(torch):
    """Make the TorchScript exporter merge only initializers that share storage.

    Outside training mode, torch.onnx's TorchScript path (torch 2.11) calls
    ``torch._C._jit_pass_onnx_deduplicate_initializers(graph, params,
    is_train=model.training)``, which merges parameters with *equal values*:
    a freshly initialised model's LayerNorm weights (all ones) and zero
    biases become one initializer, and training it would tie them. With
    is_train=True the pass merges only tensors with the same data pointer,
    i.e. real ties. Exporting in training mode instead would also put
    dropout into the graph.
    """
    orig = getattr(torch._C, "_jit_pass_onnx_deduplicate_initializers", None)
    if orig is None:
        yield
        return

    def by_identity(graph, params_dict, is_train):
        return orig(graph, params_dict, True)

    torch._C._jit_pass_onnx_deduplicate_initializers = by_identity
    try:
        yield
    finally:
        torch._C._jit_pass_onnx_deduplicate_initializers = orig


def run_exporter(wrapper, example, onnx_path, exporter, dynamic, max_seq, train, what):
    """torch.onnx.export with the fixture recipe, or the training recipe (train=True)."""
    torch = _import_stack()[0]
    ids, labels = example
    names = dict(input_names=["input_ids", "labels"], output_names=["loss", "logits"])
    try:
        if exporter == "torchscript":
            axes = None
            if dynamic:
                bs = {0: "batch", 1: "seq"}
                axes = {"input_ids": bs, "labels": bs, "logits": bs}
            # For training, every parameter must stay its own named
            # initializer: no constant folding (it folds transposed copies)
            # and no merging of equal-valued tensors.
            guard = dedup_initializers_by_identity(torch) if train else contextlib.nullcontext()
            with guard:
                torch.onnx.export(wrapper, (ids, labels), onnx_path, dynamo=False,
                                  opset_version=17, do_constant_folding=not train,
                                  dynamic_axes=axes, **names)
        else:
            shapes_arg = None
            if dynamic:
                Dim = torch.export.Dim
                lo, hi = DYNAMIC_BATCH_RANGE
                b = Dim("batch", min=lo, max=hi)
                s = Dim("seq", min=DYNAMIC_SEQ_MIN, max=max_seq)
                shapes_arg = {"input_ids": {0: b, 1: s}, "labels": {0: b, 1: s}}
            kw = dict(optimize=False) if train else {}
            torch.onnx.export(wrapper, (ids, labels), onnx_path, dynamo=True,
                              external_data=False, dynamic_shapes=shapes_arg, **names, **kw)
    except Exception as e:  # the exporters raise many kinds; report the first line
        traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(f"{exporter} export of {what} failed: {type(e).__name__}: {first}")
    if not os.path.exists(onnx_path):
        raise ExportError(f"the {exporter} exporter returned but wrote no {onnx_path}")


def check_graph_signature(facts):
    got_inputs = [g["name"] for g in facts["graph_inputs"]]
    got_outputs = [g["name"] for g in facts["graph_outputs"]]
    if got_inputs != ["input_ids", "labels"] or got_outputs != ["loss", "logits"]:
        raise ExportError(f"graph has inputs {got_inputs} and outputs {got_outputs}, expected "
                          f"['input_ids', 'labels'] and ['loss', 'logits']")


def versions_and_ort(args, onnx_path, cases, ref_logits):
    """Package versions; fill cases[i]['ort'] when onnxruntime is there. Returns (versions, problem)."""
    torch, transformers, onnx = _import_stack()
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
    return versions, ort_problem


def print_cases(name, cases):
    for i, c in enumerate(cases):
        ort_txt = f", onnxruntime {c['ort']['loss']:.9g}" if "ort" in c else ""
        print(f"colossal.export: {name} case {i} {c['logits_shape'][:2]}: "
              f"torch loss {c['torch_loss']:.9g}{ort_txt}")


def check_sizes(args, max_seq):
    if args.seq > max_seq or args.seq < DYNAMIC_SEQ_MIN or args.batch < 1:
        raise UsageError(f"--batch must be >= 1 and --seq in [{DYNAMIC_SEQ_MIN}, {max_seq}], "
                         f"got {args.batch} x {args.seq}")


def export(args):
    """Export one fixture; return the path of the .json written."""
    torch, transformers, onnx = _import_stack()
    arch, exporter, dynamic = args.arch, args.exporter, args.dynamic
    model_cls_name, _, task, _, note = ARCHS[arch]
    check_sizes(args, MAX_POSITIONS)
    name = fixture_name(arch, exporter, dynamic)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, name + ".onnx")
    json_path = os.path.join(args.out, name + ".json")

    wrapper, model = build_model(arch, exporter)
    tensors = make_cases(task, case_shapes(args.batch, args.seq, dynamic))
    cases, ref_logits = reference_cases(wrapper, tensors)
    run_exporter(wrapper, tensors[0], onnx_path, exporter, dynamic, MAX_POSITIONS,
                 train=False, what=model_cls_name)

    facts = describe_onnx(onnx_path)
    check_graph_signature(facts)
    versions, ort_problem = versions_and_ort(args, onnx_path, cases, ref_logits)

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

    print_cases(name, cases)
    print(f"colossal.export: wrote {onnx_path} ({doc['file_size_bytes']} bytes) and {json_path}")
    if ort_problem:
        raise ExportError(ort_problem)
    return json_path


def parameter_facts(wrapper, model):
    """(groups, shapes, preferred, tied, padding) of the wrapper's parameters for export_metadata.

    groups: every name of each distinct tensor, in named_parameters() order
    (parameter identity finds ties, whatever the model declares); shapes:
    first name -> shape; preferred: the input embedding's names; tied: the
    names the model re-ties (_tied_weights_keys); padding: (weight name,
    padding_idx) of every nn.Embedding with a padding row.
    """
    torch = _import_stack()[0]
    by_id = {}
    for n, p in wrapper.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), (p, []))[1].append(n)
    order = [id(p) for _, p in wrapper.named_parameters()]
    groups = [by_id[i][1] for i in order]
    shapes = {by_id[i][1][0]: list(by_id[i][0].shape) for i in order}
    preferred = set()
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is not None and getattr(emb, "weight", None) is not None:
        preferred = set(by_id.get(id(emb.weight), (None, []))[1])
    tied = tied_targets(getattr(model, "all_tied_weights_keys", None)
                        or getattr(model, "_tied_weights_keys", None))
    padding = []
    for mname, m in wrapper.named_modules(remove_duplicate=False):
        if isinstance(m, torch.nn.Embedding) and m.padding_idx is not None:
            padding.append((f"{mname}.weight", m.padding_idx))
    return groups, shapes, preferred, tied, padding


def export_train(args):
    """Export a training graph with its colossal.export metadata; return the .onnx path."""
    torch, transformers, onnx = _import_stack()
    exporter, dynamic = args.exporter, args.dynamic
    if args.model:
        model = load_model(args.model)
        arch = getattr(model.config, "model_type", "") or ""
        task, source = "causal-lm", args.model
        wrapper = wrap(model, needs_mask_workaround(arch, exporter))
    else:
        wrapper, model = build_model(args.arch, exporter)
        arch, task, source = args.arch, ARCHS[args.arch][2], args.arch
    random_init = not args.model or args.model.endswith(".json")
    hf_class = type(model).__name__
    cfg = model.config
    max_seq = (getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
               or MAX_POSITIONS)
    check_sizes(args, max_seq)
    name = args.name or train_name(source, exporter, dynamic)
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, name + ".onnx")
    json_path = os.path.join(args.out, name + ".json")

    tensors = make_cases(task, case_shapes(args.batch, args.seq, dynamic), cfg.vocab_size)
    cases, ref_logits = reference_cases(wrapper, tensors)
    run_exporter(wrapper, tensors[0], onnx_path, exporter, dynamic, max_seq, train=True,
                 what=hf_class)

    # Which initializer is which parameter: names from the wrapper, ties by
    # identity, then the metadata goes into the file as a model-level entry.
    proto = onnx.load(onnx_path)
    inits = {t.name: list(t.dims) for t in proto.graph.initializer}
    groups, shapes, preferred, tied, padding = parameter_facts(wrapper, model)
    hf_config = json.loads(cfg.to_json_string(use_diff=False))
    meta, absent = export_metadata(groups, list(inits), hf_class, hf_config, tied=tied,
                                   preferred=preferred, padding=padding)
    first_of = {}
    for g in groups:
        for n in g:
            first_of[n] = g[0]
    for init in meta["trainable"]:
        want = shapes[first_of[init]]
        if inits[init] != want:
            raise ExportError(f"initializer {init!r} has shape {inits[init]}, its parameter "
                              f"{first_of[init]!r} {want}")
    # A parameter missing from the initializers is either unused by the loss
    # or was merged into an equal-valued one (which would train them tied).
    params = dict(wrapper.named_parameters())
    for n in absent:
        twin = next((t for t in meta["trainable"] if first_of[t] in params
                     and params[first_of[t]].shape == params[n].shape
                     and torch.equal(params[first_of[t]], params[n])), None)
        if twin:
            raise ExportError(f"parameter {n!r} is no initializer: the exporter merged it into "
                              f"the equal-valued {twin!r}, and training would tie them")
        print(f"colossal.export: warning: parameter {n!r} is no initializer of the graph "
              f"(unused by the loss?): it is not trained and colossal-run will not export it",
              file=sys.stderr)
    keep = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata_json(meta)
    onnx.save(proto, onnx_path)

    facts = describe_onnx(onnx_path)
    check_graph_signature(facts)
    versions, ort_problem = versions_and_ort(args, onnx_path, cases, ref_logits)
    trained = sum(p.numel() for p in model.parameters())
    doc = {
        "export": name + ".onnx",
        "source": source,
        "arch": arch,
        "hf_class": hf_class,
        "task": task,
        "exporter": exporter,
        "how": how_string(exporter, dynamic, max_seq, train=True),
        "dynamic_axes": bool(dynamic),
        "versions": versions,
        # A model loaded with its weights had no init seed.
        "seeds": {"model_init_torch_manual_seed": MODEL_SEED if random_init else None,
                  "inputs_generator_seed": INPUTS_SEED},
        "mode": MODE,
        "wrapper": wrapper_string(arch, task, exporter),
        "num_params": trained,
        "not_initializers": absent,
        "opset": facts["opset"],
        "file_size_bytes": os.path.getsize(onnx_path),
        "graph_inputs": facts["graph_inputs"],
        "graph_outputs": facts["graph_outputs"],
        "op_histogram": facts["op_histogram"],
        "cases": cases,
        "metadata": meta,
        "model_config": hf_config,
    }
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    print_cases(name, cases)
    pads = ", ".join(f"{k} row {v}" for k, v in meta.get("padding_idx", {}).items()) or "none"
    ties = "; ".join(" = ".join(v) for v in meta["tied"].values()) or "none"
    print(f"colossal.export: {name}: {len(meta['trainable'])} trainable initializers "
          f"({trained} parameters) of {len(inits)}; tied: {ties}; padding_idx: {pads}")
    print(f"colossal.export: wrote {onnx_path} ({doc['file_size_bytes']} bytes, metadata "
          f"'{METADATA_KEY}') and {json_path}")
    if ort_problem:
        raise ExportError(ort_problem)
    return onnx_path


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="python -m colossal.export",
        description="Export a Hugging Face model, wrapped as forward(input_ids, labels) -> "
                    "(loss, logits), to ONNX: a tiny fixture with a .json of PyTorch's "
                    "reference numbers, or (--train) a training export with colossal.export "
                    "metadata.")
    ap.add_argument("--train", action="store_true",
                    help="training export: every parameter a named initializer, plus the "
                         "colossal.export metadata (trainable weights, HF names, ties)")
    ap.add_argument("--arch", choices=sorted(ARCHS),
                    help="model family (built from its config class, tiny sizes)")
    ap.add_argument("--model", metavar="NAME_OR_PATH",
                    help="--train only: a HF causal LM loaded offline (hub name in the cache, "
                         "a saved folder) or a config.json (random weights)")
    ap.add_argument("--exporter", choices=["torchscript", "dynamo"],
                    help="torch.onnx.export(dynamo=False, opset 17) or (dynamo=True); "
                         "required without --train, default dynamo with it")
    ap.add_argument("--dynamic", action="store_true",
                    help="symbolic batch and seq axes (adds a second case)")
    ap.add_argument("--out", default=".", help="output directory (default: .)")
    ap.add_argument("--name", help="--train only: file stem (default "
                                   "<arch or model>-train.<exporter>[.dynamic])")
    ap.add_argument("--batch", type=int, default=2, help="batch of case 0 (default 2)")
    ap.add_argument("--seq", type=int, default=16, help="sequence length of case 0 (default 16)")
    ap.add_argument("--no-ort", action="store_true",
                    help="do not check the export with onnxruntime")
    args = ap.parse_args(argv)
    if args.train:
        if bool(args.arch) == bool(args.model):
            ap.error("--train needs exactly one of --arch and --model")
        args.exporter = args.exporter or "dynamo"
    else:
        if args.model or args.name:
            ap.error("--model and --name need --train")
        if not args.arch or not args.exporter:
            ap.error("the arguments --arch and --exporter are required (without --train)")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.train:
        what = args.name or train_name(args.arch or args.model, args.exporter, args.dynamic)
    else:
        what = fixture_name(args.arch, args.exporter, args.dynamic)
    try:
        export_train(args) if args.train else export(args)
    except UsageError as e:
        print(f"colossal.export: error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"colossal.export: error: {what}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
