#===- compare_oracle.py - A colossal-run training run against its oracle ---===#
#
#   compare_oracle.py ORACLE.json ORACLE.safetensors METRICS.jsonl GRADS.safetensors
#
# Checks colossal-run's --metrics (step k's loss and grad_norm) against the
# oracle's losses[k] and grad_norms[k] (1e-4 relative), and its --dump-grads
# (step 0's mean gradients, keyed by parameter name) against grad0.<name>
# (1e-3 relative plus 1e-4 of the largest gradient entry, so that gradients
# that are zero in exact arithmetic, like an attention key bias's, compare as
# rounding noise). Names an export drops (a tied embedding, listed under
# exports.<exporter>.missing) are skipped. Prints one line on success.
#
#===----------------------------------------------------------------------===#

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "Inputs"))
import colossal_testutil as u  # noqa: E402


def main(oracle_json, oracle_st, metrics_path, grads_path):
    oracle = json.load(open(oracle_json))
    metrics = [json.loads(line) for line in open(metrics_path)]
    losses, norms = oracle["losses"], oracle["grad_norms"]
    if [m["step"] for m in metrics] != list(range(len(losses))):
        sys.exit("steps %s, expected 0..%d" % ([m["step"] for m in metrics], len(losses) - 1))
    for m, loss, norm in zip(metrics, losses, norms):
        np.testing.assert_allclose(m["loss"], loss, rtol=1e-4, err_msg="loss of step %d" % m["step"])
        np.testing.assert_allclose(m["grad_norm"], norm, rtol=1e-4,
                                   err_msg="grad_norm of step %d" % m["step"])

    ref = u.read_safetensors(oracle_st)
    ours = u.read_safetensors(grads_path)
    dropped = set()
    for export in oracle.get("exports", {}).values():
        dropped.update(export.get("missing", []))
    scale = max(float(np.max(np.abs(v))) for k, v in ref.items() if k.startswith("grad0."))
    compared = 0
    for key, want in ref.items():
        if not key.startswith("grad0."):
            continue
        name = key[len("grad0."):]
        if name not in ours:
            if name in dropped:
                continue
            sys.exit("no gradient for %s (have: %s)" % (name, ", ".join(sorted(ours))))
        np.testing.assert_allclose(ours[name], want, rtol=1e-3, atol=1e-4 * scale, err_msg=name)
        compared += 1
    print("%d steps match, %d gradients match" % (len(metrics), compared))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: compare_oracle.py ORACLE.json ORACLE.safetensors METRICS.jsonl GRADS.safetensors")
    main(*sys.argv[1:])
