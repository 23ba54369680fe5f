#===- __init__.py - colossal Python tools ----------------------------------===#
"""Python side of colossal-opt.

Submodules are tools run as ``python -m colossal.<tool>`` with ``PYTHONPATH=python``:

* ``colossal.export``: a Hugging Face model with its loss, exported to ONNX:
  the tiny forward fixtures of ``test/data/models``, or (``--train``) a
  training export whose ``colossal.export`` metadata names the trained
  parameters, their Hugging Face names and ties (docs/python.md).
* ``colossal.tokenize``: text files to a raw token stream for
  ``colossal-run --data`` (a transformers tokenizer, or bytes).

Importing this package (or its submodules) needs neither torch nor
transformers; each tool imports them when it runs.
"""
