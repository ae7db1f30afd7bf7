#!/usr/bin/env bash
# The GPU measurement of flanet in one command, from a clone (issue 15, "ready for a GPU"):
#
#     bash benchmarks/gpu.sh                 # $PYTHON, else python; under 10 minutes on an H100/H200
#
# 1. benchmarks/gpu.py (arguments are passed on, e.g. --out, --device cuda:1): streaming at batch 1
#    (float32, bf16, bf16 channels-last, bf16 + torch.compile/CUDA graphs), batched streaming, the
#    authors' architecture side by side, one training step of the paper recipe; one table on stdout,
#    JSON in bench-gpu.json. Without a GPU it stops at once with exit status 2.
# 2. The CUDA checks: compiled step == eager, bf16 within its tolerance of float32
#    (tests/test_inference_acceleration.py, the tests named *cuda*); exit status 1 if one fails.
# With --smoke only step 1 runs, on the CPU, tiny (tests/test_benchmarks_gpu.py).
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
"$PYTHON" benchmarks/gpu.py "$@" || exit $?
case " $* " in *" --smoke "*) exit 0 ;; esac
exec "$PYTHON" -m pytest tests/test_inference_acceleration.py -k cuda -q -p no:cacheprovider
