#!/usr/bin/env bash
# The checks to run when a GPU (or another accelerator) is lent: under 8 minutes in all.
#
#   1. the test suite on the host's CPUs (it simulates 4 CPU devices, which an accelerator
#      does not have), in parallel, without the tests marked slow;     <= 200 s
#   2. the ResNet and model-state tests on the accelerator itself;      <= 75 s
#   3. ResNet-18 (width 20 and 64) training throughput at batch 32, 256 and 1024, plain and
#      augmented (and against PyTorch if it is installed and sees the GPU);  <= 115 s
#   4. the paper CNN's throughput at the same batches;                 <= 60 s
#   5. UPGD's and the forgetting accumulator's step against AdaGrad's and CLASSP's at 1e7
#      params (on XLA:CPU the Gaussian draw alone is ~20x AdaGrad's step);  <= 25 s
#
# Each step has its own time limit and the script goes on after a failure; it ends with
# one line per step and exits non-zero if any failed. Run it from the repository root
# with the project's environment active:
#
#   bash benchmarks/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # steps 2-4 share the accelerator with nothing else
workers=$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))
python -c "import jax; print('jax', jax.__version__, jax.devices())"

declare -a names results
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (at most ${limit}s)"
  local start=$SECONDS
  timeout --signal=INT --kill-after=10 "$limit" "$@"
  local rc=$?
  names+=("$name")
  results+=("rc=$rc after $((SECONDS - start))s")
}

step "test suite on CPU" 200 env JAX_PLATFORMS=cpu \
  python -m pytest -q -p no:cacheprovider -n "$workers" -m "not slow" tests classp_jax
step "ResNet tests on the accelerator" 75 \
  python -m pytest -q -p no:cacheprovider -n 0 -m "not slow" tests/test_resnet.py
step "ResNet-18 throughput" 115 \
  python benchmarks/resnet_throughput.py --widths 20,64 --batches 32,256,1024 --steps 10 --rounds 3
step "paper CNN throughput" 60 \
  python benchmarks/throughput.py --batches 32,256,1024 --rounds 3 --strategies loop,unrolled
step "plasticity optimizer steps" 25 \
  python benchmarks/plasticity_speed.py --size 1e7 --rounds 10

failed=0
for i in "${!names[@]}"; do
  echo "${names[$i]}: ${results[$i]}"
  [[ ${results[$i]} == rc=0* ]] || failed=1
done
exit $failed
