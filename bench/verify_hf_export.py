#!/usr/bin/env python3
#===- verify_hf_export.py - Exported weights load into transformers -------===#
"""Check that weights colossal-run exported load into the Hugging Face model and give its loss.

    python3 bench/verify_hf_export.py --weights W.safetensors \\
        (--onnx EXPORT.onnx | --metadata META.json | --oracle ARCH-train.oracle.json) \\
        --batches B.safetensors (--metrics M.jsonl --step K | --index I --loss X) \\
        [--rtol 1e-5] [--device cpu] [--name NAME] [--json OUT.json]
    python3 bench/verify_hf_export.py --manifest CASES.json [--json OUT.json]

W.safetensors comes from `colossal-run PLAN --export-weights W` (weights under
their Hugging Face state-dict names). The model is described by the
`colossal.export` metadata of a `python -m colossal.export --train` export
(read from the .onnx, or from a .json holding it or the export's sidecar
.json), or, for the oracles (which carry no metadata), by `hf_class` and
`model_config` of the oracle .json. Needs torch, transformers, safetensors
(and onnx for --onnx).

For each case:

1. build `hf_class` from the config (fp32, eager attention, CPU by default);
2. `model.load_state_dict(weights, strict=False)` and require no unexpected
   key and no missing key except the tied duplicates the model re-ties (a
   name of a tensor shared with a name present in the file, e.g.
   `lm_head.weight` beside `model.decoder.embed_tokens.weight`) and
   non-parameter buffers (listed), i.e. strict up to the ties; every loaded
   tensor must equal the file's and every tie must still hold;
3. the same through the front door: `from_pretrained` on a folder holding
   `config.json` and the weights as `model.safetensors`, with no missing,
   unexpected or mismatched key;
4. the HF loss `model(input_ids, labels).loss` of both on the batch
   (`--batches` entry `--index`, or `K % len` for `--metrics M --step K`,
   whose loss is colossal's) must be within `--rtol` (1e-5) of colossal's
   loss.

A manifest is a JSON list of objects with the same keys as the options
(`name`, `weights`, `onnx`|`metadata`|`oracle`, `batches`, `metrics` and
`step`, or `index` and `loss`), paths relative to the manifest; one process
checks them all. Prints one line per case; exit status 0 when every case
passes, 1 when one fails, 2 on bad usage or a missing package.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback

METADATA_KEY = "colossal.export"


class CaseError(Exception):
    """A check failed."""


def load_description(case):
    """(hf_class, config dict, where) for a case."""
    if case.get("onnx"):
        import onnx
        m = onnx.load(case["onnx"], load_external_data=False)
        for p in m.metadata_props:
            if p.key == METADATA_KEY:
                meta = json.loads(p.value)
                return meta["hf_class"], meta["hf_config"], f"{case['onnx']} metadata"
        raise CaseError(f"{case['onnx']} has no '{METADATA_KEY}' metadata entry")
    if case.get("metadata"):
        with open(case["metadata"]) as f:
            doc = json.load(f)
        meta = doc.get("metadata", doc)  # an export's sidecar .json holds it under "metadata"
        return meta["hf_class"], meta["hf_config"], case["metadata"]
    if case.get("oracle"):
        with open(case["oracle"]) as f:
            doc = json.load(f)
        return doc["hf_class"], doc["model_config"], case["oracle"]
    raise CaseError("needs one of onnx, metadata, oracle")


def colossal_loss(case, num_batches):
    """(batch index, colossal's loss)."""
    if case.get("metrics") is not None:
        step = int(case["step"])
        with open(case["metrics"]) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        got = [r for r in rows if r.get("step") == step]
        if not got:
            raise CaseError(f"{case['metrics']} has no row for step {step}")
        return step % num_batches, float(got[0]["loss"])
    return int(case["index"]), float(case["loss"])


def build(transformers, torch, hf_class, config_dict):
    try:
        cls = getattr(transformers, hf_class)
    except AttributeError:
        raise CaseError(f"transformers {transformers.__version__} has no {hf_class}")
    config = cls.config_class.from_dict(dict(config_dict))
    config.use_cache = False
    torch.manual_seed(0)  # the values are all overwritten; only the shapes matter
    try:
        model = cls._from_config(config, attn_implementation="eager")
    except TypeError:  # an older transformers without the keyword
        config._attn_implementation = "eager"
        model = cls(config)
    return cls, config, model.float().eval()


def tie_groups(model):
    """Lists of the names of each parameter tensor that has several names."""
    by_id = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(n)
    return [g for g in by_id.values() if len(g) > 1]


def hf_loss(torch, model, ids, labels, device):
    with torch.no_grad():
        out = model.to(device)(input_ids=ids.to(device), labels=labels.to(device))
    return float(out.loss)


def check_case(case, rtol, device):
    import torch
    import transformers
    from safetensors import safe_open
    from safetensors.torch import load_file

    hf_class, cfg, where = load_description(case)
    batches = load_file(case["batches"])
    ids_all, labels_all = batches["input_ids"], batches["labels"]
    if ids_all.dim() != 3:
        raise CaseError(f"{case['batches']}: input_ids must be [K, batch, seq], got "
                        f"{list(ids_all.shape)}")
    index, ours = colossal_loss(case, ids_all.shape[0])
    ids, labels = ids_all[index].long(), labels_all[index].long()

    with safe_open(case["weights"], "pt") as f:
        file_meta = f.metadata() or {}
    weights = load_file(case["weights"])
    cls, config, model = build(transformers, torch, hf_class, cfg)

    # 2. load_state_dict, strict up to the ties.
    param_names = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    groups = tie_groups(model)
    tied_ok = {n for g in groups if any(m in weights for m in g) for n in g if n not in weights}
    bad_missing = sorted(n for n in missing if n in param_names and n not in tied_ok)
    buffers = sorted(n for n in missing if n not in param_names)
    if unexpected or bad_missing:
        raise CaseError(f"load_state_dict: unexpected keys {sorted(unexpected)}, missing "
                        f"parameters {bad_missing}")
    state = dict(model.named_parameters(remove_duplicate=False))
    for n, t in weights.items():
        if not torch.equal(state[n].detach(), t.to(state[n].dtype)):
            raise CaseError(f"parameter {n} differs from the file after loading")
    for g in groups:
        if len({state[n].data_ptr() for n in g}) != 1:
            raise CaseError(f"the tie {g} does not hold after loading")
    loss_sd = hf_loss(torch, model, ids, labels, device)

    # 3. from_pretrained on a saved folder.
    tmp = tempfile.mkdtemp(prefix="verify_hf_export.")
    try:
        config.save_pretrained(tmp)
        shutil.copyfile(case["weights"], os.path.join(tmp, "model.safetensors"))
        kw = dict(output_loading_info=True, attn_implementation="eager")
        try:
            model2, info = cls.from_pretrained(tmp, dtype=torch.float32, **kw)
        except TypeError:  # transformers 4 names it torch_dtype
            model2, info = cls.from_pretrained(tmp, torch_dtype=torch.float32, **kw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model2 = model2.float().eval()
    fp_missing = sorted(n for n in info.get("missing_keys", [])
                        if n in param_names and n not in tied_ok)
    fp_unexpected = sorted(info.get("unexpected_keys", []))
    fp_mismatched = list(info.get("mismatched_keys", []))
    if fp_missing or fp_unexpected or fp_mismatched:
        raise CaseError(f"from_pretrained: missing {fp_missing}, unexpected {fp_unexpected}, "
                        f"mismatched {fp_mismatched}")
    loss_fp = hf_loss(torch, model2, ids, labels, device)

    # 4. the losses.
    errs = [abs(x - ours) / abs(ours) for x in (loss_sd, loss_fp)]
    result = {
        "name": case.get("name") or os.path.basename(case["weights"]),
        "hf_class": hf_class, "described_by": where, "file_metadata": file_meta,
        "tensors_in_file": len(weights), "parameters": len(param_names),
        "tied_duplicates_not_in_file": sorted(tied_ok), "buffers_not_in_file": buffers,
        "batch_index": index, "colossal_loss": ours, "hf_loss_load_state_dict": loss_sd,
        "hf_loss_from_pretrained": loss_fp, "rel_err": max(errs), "rtol": rtol,
        "device": device, "torch": torch.__version__, "transformers": transformers.__version__,
    }
    result["ok"] = max(errs) <= rtol
    return result


def resolve(case, base):
    out = dict(case)
    for k in ("weights", "onnx", "metadata", "oracle", "batches", "metrics"):
        if out.get(k) and not os.path.isabs(out[k]):
            out[k] = os.path.join(base, out[k])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--manifest", help="a JSON list of cases (see the docstring)")
    ap.add_argument("--name")
    ap.add_argument("--weights")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--onnx", help="a colossal.export --train export (its metadata)")
    src.add_argument("--metadata", help="the metadata as JSON, or the export's sidecar .json")
    src.add_argument("--oracle", help="an <arch>-train.oracle.json (hf_class, model_config)")
    ap.add_argument("--batches", help="safetensors with input_ids, labels [K, batch, seq]")
    ap.add_argument("--metrics", help="colossal-run --metrics file; with --step")
    ap.add_argument("--step", type=int)
    ap.add_argument("--index", type=int, help="batch index; with --loss")
    ap.add_argument("--loss", type=float, help="colossal's loss on that batch")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)

    if args.manifest:
        with open(args.manifest) as f:
            cases = [resolve(c, os.path.dirname(os.path.abspath(args.manifest)))
                     for c in json.load(f)]
    else:
        if not args.weights or not args.batches or not (args.onnx or args.metadata or args.oracle):
            ap.error("give --manifest, or --weights, --batches and one of --onnx, --metadata, "
                     "--oracle")
        if (args.metrics is None) == (args.loss is None) or \
                (args.metrics is not None and args.step is None) or \
                (args.loss is not None and args.index is None):
            ap.error("give --metrics with --step, or --index with --loss")
        cases = [{k: getattr(args, k) for k in ("name", "weights", "onnx", "metadata", "oracle",
                                                 "batches", "metrics", "step", "index", "loss")}]
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import safetensors  # noqa: F401
    except ImportError as e:
        print(f"verify_hf_export: error: needs torch, transformers and safetensors: {e}",
              file=sys.stderr)
        return 2

    results, failed = [], 0
    for case in cases:
        name = case.get("name") or os.path.basename(case.get("weights") or "?")
        try:
            r = check_case(case, args.rtol, args.device)
        except Exception as e:  # report every case, whatever breaks
            traceback.print_exc()
            r = {"name": name, "ok": False, "error": f"{type(e).__name__}: {e}"}
        results.append(r)
        if r["ok"]:
            print(f"verify_hf_export: {name}: ok: {r['hf_class']}, {r['tensors_in_file']} "
                  f"tensors loaded (re-tied {r['tied_duplicates_not_in_file'] or 'none'}, "
                  f"buffers {r['buffers_not_in_file'] or 'none'}); batch {r['batch_index']}: "
                  f"colossal {r['colossal_loss']:.9g}, HF {r['hf_loss_load_state_dict']:.9g} "
                  f"(load_state_dict) {r['hf_loss_from_pretrained']:.9g} (from_pretrained), "
                  f"rel err {r['rel_err']:.2e}")
        else:
            failed += 1
            why = r.get("error") or (f"rel err {r['rel_err']:.2e} > {r['rtol']:g}: colossal "
                                     f"{r['colossal_loss']:.9g}, HF "
                                     f"{r['hf_loss_load_state_dict']:.9g}")
            print(f"verify_hf_export: {name}: FAIL: {why}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
            f.write("\n")
    print(f"verify_hf_export: {len(results) - failed} of {len(results)} cases pass")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
