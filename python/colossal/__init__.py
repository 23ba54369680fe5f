#===- __init__.py - colossal Python tools ----------------------------------===#
"""Python side of colossal-opt.

Submodules are tools run as ``python -m colossal.<tool>`` with ``PYTHONPATH=python``:

* ``colossal.export``: a tiny Hugging Face model with its loss, exported to ONNX
  the way the fixtures in ``test/data/models`` are made.

Importing this package (or its submodules) needs neither torch nor
transformers; each tool imports them when it runs.
"""
