# lit configuration for colossal-opt. Run it on the build tree:
#   lit build/test            (or: ninja -C build check-colossal)
import os

import lit.formats
from lit.llvm import llvm_config

if getattr(config, "colossal_obj_root", None) is None:
    lit_config.fatal("run lit on the build tree (lit build/test), not on the sources")

config.name = "colossal"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.colossal_obj_root, "test")

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.colossal_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    ["colossal-opt", "colossal-run"], [config.colossal_tools_dir])

config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%src_root", config.colossal_src_root))
config.substitutions.append(("%testdata", os.path.join(config.colossal_src_root, "test", "data")))
config.substitutions.append(("%pyutils", os.path.join(config.colossal_src_root, "test", "Inputs")))

# The shared fixtures beside the checkout (../shared): tests that need them
# are marked `REQUIRES: shared-fixtures` and skip, saying so, without them.
shared = os.path.abspath(os.path.join(config.colossal_src_root, "..", "shared"))
if os.path.isdir(os.path.join(shared, "models")):
    config.available_features.add("shared-fixtures")
    config.substitutions.append(("%shared", shared))
else:
    config.substitutions.append(("%shared", "/nonexistent-shared"))

# onnxruntime (pip, in the repo's .venv made by scripts/python-env.sh) is the
# reference for the op-numerics tests, marked `REQUIRES: onnxruntime`.
import subprocess
ort_python = os.path.join(config.colossal_src_root, ".venv", "bin", "python")
try:
    if os.path.exists(ort_python) and subprocess.run(
            [ort_python, "-c", "import onnxruntime"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=60).returncode == 0:
        config.available_features.add("onnxruntime")
except (OSError, subprocess.SubprocessError):
    pass
config.substitutions.append(("%ortpython", ort_python))
