#!/usr/bin/env bash
# The one GPU check, for a lent GPU machine with no network (see README "Checking the GPU path").
#
#   bash benchmarks/gpu_check.sh            # from the repository root; results under $OUT
#   bash benchmarks/gpu_check.sh --prepare  # earlier calls: copy carried .ort-pieces/ to $ORT_PIECES, install the
#                                           # pure-Python wheels and start the pycuda build in the background
#                                           # (its wheel lands in $GPU_PREP/wheels); returns at once. The full
#                                           # run then waits for that build instead of building pycuda itself.
#
# Needs, carried beside the repository (both ignored by git):
#   .whl/          the pycuda sdist and the pure-Python wheels it needs for this Python, e.g.
#                    pip download --no-deps -d .whl pycuda==2026.1
#                    pip download --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
#                      --abi cp312 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#                      -d .whl pytools platformdirs typing_extensions siphash24 mako markupsafe \
#                      onnxconverter-common tqdm
#                  (a prebuilt pycuda wheel from an earlier run, $OUT/wheels/pycuda-*.whl, may be put here
#                  instead of building again)
#   onnxruntime-gpu (optional): either the wheel itself in .whl/, or its pieces already copied to
#                  $ORT_PIECES (default /tmp/ort-pieces) by earlier calls, with SHA256SUMS beside them.
#   nvImageCodec (optional, GPU JPEG decoding): its two wheels in .whl/ (29 MB together), e.g.
#                    pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#                      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#                      nvidia-nvimgcodec-cu13==0.9.0.20 nvidia-nvjpeg==13.2.3.58
#                  (nvidia_nvimgcodec_cu13-0.9.0.20 25.0 MB, nvidia_nvjpeg-13.2.3.58 4.1 MB). They are
#                  installed beside the interpreter's own nvidia/ packages (never ahead of them on the path:
#                  torch needs those: linked into that folder), or on PYTHONPATH when it is read-only.
#
# Environment: OUT (results; default ./gpu-check-out), CUDA_ROOT (default: from nvcc), GPU_SITE (install
# target put on PYTHONPATH; default /tmp/vggedge-gpu-site), GPU_PREP (--prepare's folder; default
# /tmp/vggedge-gpu-prep), PYCUDA_WAIT_S (how long the run waits for that build; default 420),
# BUDGET_S (Python part's budget, default 360),
# BATCHES (default 1,8,32), QUICK=1 (fewer repetitions), FILES (distinct 1080p JPEGs for jobs/peers, default 2000),
# SECTIONS (comma-separated subset of gpu_check.py's sections).
set -uo pipefail
export PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
MODE=${1:-check}
PREP=${GPU_PREP:-/tmp/vggedge-gpu-prep}
OUT=${OUT:-$PWD/gpu-check-out}
[ "$MODE" = --build-pycuda ] && OUT=$PREP  # the background build logs beside its wheel, never into a call's $OUT
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log") 2>&1
REPO=$PWD
WHL=${WHL:-$REPO/.whl}
SITE=${GPU_SITE:-/tmp/vggedge-gpu-site}
ORT_PIECES=${ORT_PIECES:-/tmp/ort-pieces}
PY=${PYTHON:-python3}
case "$PY" in */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")";; esac  # absolute: the build changes directory
step() { echo "=== $(date -u +%H:%M:%S) $*"; }
status=0
case "$MODE" in check|--prepare|--build-pycuda) ;; *) echo "usage: bash benchmarks/gpu_check.sh [--prepare]"; exit 2;; esac

[ -f "$REPO/pyproject.toml" ] && [ -d "$REPO/vggedge" ] || { echo "run from the repository root"; exit 2; }
mkdir -p "$SITE"
export PYTHONPATH="$SITE:$REPO${PYTHONPATH:+:$PYTHONPATH}"

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY --version
# The toolkit folder holding include/cuda.h (pycuda's build needs it): $CUDA_ROOT, $CUDA_HOME, nvcc's, /usr/local/cuda.
NVCC=$(command -v nvcc || true)
for candidate in "${CUDA_ROOT:-}" "${CUDA_HOME:-}" ${NVCC:+"$(dirname "$(dirname "$(readlink -f "$NVCC")")")"} \
                 /usr/local/cuda /usr/local/cuda-13.0 /usr/local/cuda-12.6; do
  if [ -n "$candidate" ] && [ -f "$candidate/include/cuda.h" ]; then CUDA_ROOT=$candidate; break; fi
done
echo "CUDA_ROOT=${CUDA_ROOT:-not found (no include/cuda.h)}"
CUDA_ROOT=${CUDA_ROOT:-/usr/local/cuda}
if [ -z "$NVCC" ] && [ -x "$CUDA_ROOT/bin/nvcc" ]; then export PATH="$CUDA_ROOT/bin:$PATH"; NVCC=$CUDA_ROOT/bin/nvcc; fi
$PY -c "import tensorrt; print('tensorrt', tensorrt.__version__)" 2>&1 | tail -1
ldconfig -p 2>/dev/null | grep nvinfer | head -3 || echo "no libnvinfer in ldconfig"

# pycuda's wheel from the sdist in .whl/ into folder $1 (in a subshell: it changes directory)
build_pycuda() (
  src=$(mktemp -d)
  curand=; [ -f "$CUDA_ROOT/include/curand.h" ] || curand=--no-cuda-enable-curand  # a toolkit without cuRAND
  tar xzf "$WHL"/pycuda-*.tar.gz -C "$src" && cd "$src"/pycuda-* \
    && $PY configure.py --cuda-root="$CUDA_ROOT" $curand \
    && $PY -m pip wheel -q --no-build-isolation --no-index --no-deps -w "$1" .
)

if [ "$MODE" = --build-pycuda ]; then  # the background half of --prepare: the wheel, then its exit status
  build_pycuda "$PREP/wheels"; rc=$?
  echo "$rc" > "$PREP/pycuda.status"
  exit "$rc"
fi

step "pure-Python dependencies"
wheels=$(ls "$WHL"/*.whl 2>/dev/null | grep -v -e '/pycuda-' -e '/onnxruntime_gpu-' -e '/nvidia_' || true)
if [ -n "$wheels" ]; then
  $PY -m pip install -q --no-index --no-deps --target "$SITE" $wheels || status=1
fi

if [ "$MODE" = --prepare ]; then
  if ls "$REPO"/.ort-pieces/* >/dev/null 2>&1; then
    mkdir -p "$ORT_PIECES" && cp "$REPO"/.ort-pieces/* "$ORT_PIECES"/ || status=1
  fi
  echo "onnxruntime-gpu pieces in $ORT_PIECES: $(ls "$ORT_PIECES" 2>/dev/null | tr '\n' ' ')"
  mkdir -p "$PREP/wheels"
  if $PY -c "import pycuda.driver" 2>/dev/null; then
    echo "pycuda: already importable"
  elif ls "$WHL"/pycuda-*.whl >/dev/null 2>&1; then
    echo "pycuda: a wheel was carried ($(basename "$(ls "$WHL"/pycuda-*.whl | head -1)"))"
  elif [ -f "$PREP/pycuda.pid" ] && [ ! -f "$PREP/pycuda.status" ]; then
    echo "pycuda: still building in the background (pid $(cat "$PREP/pycuda.pid"), log $PREP/pycuda-build.log)"
  elif [ -f "$PREP/pycuda.status" ]; then
    echo "pycuda: the background build ended with status $(cat "$PREP/pycuda.status") (log $PREP/pycuda-build.log)"
  elif ls "$WHL"/pycuda-*.tar.gz >/dev/null 2>&1; then
    setsid nohup bash "$0" --build-pycuda > "$PREP/pycuda-build.log" 2>&1 < /dev/null &
    echo $! > "$PREP/pycuda.pid"
    echo "pycuda: building in the background (pid $!, log $PREP/pycuda-build.log)"
  else
    echo "pycuda: no sdist in $WHL"; status=1
  fi
  step "prepared (status $status)"
  exit $status
fi

step "pycuda"
if [ -f "$PREP/pycuda.pid" ] && [ ! -f "$PREP/pycuda.status" ]; then  # --prepare's build: wait for it
  waited=0
  while [ ! -f "$PREP/pycuda.status" ] && kill -0 "$(cat "$PREP/pycuda.pid")" 2>/dev/null \
        && [ "$waited" -lt "${PYCUDA_WAIT_S:-420}" ]; do sleep 2; waited=$((waited + 2)); done
  echo "waited ${waited} s for the background pycuda build"
fi
if $PY -c "import pycuda.driver" 2>/dev/null; then
  echo "pycuda already importable"
elif ls "$WHL"/pycuda-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --target "$SITE" "$WHL"/pycuda-*.whl || status=1
elif [ "$(cat "$PREP/pycuda.status" 2>/dev/null)" = 0 ] && ls "$PREP"/wheels/pycuda-*.whl >/dev/null 2>&1; then
  mkdir -p "$OUT/wheels" && cp "$PREP"/wheels/pycuda-*.whl "$OUT/wheels/"  # to carry next time
  $PY -m pip install -q --no-index --no-deps --target "$SITE" "$PREP"/wheels/pycuda-*.whl || status=1
else
  if [ -f "$PREP/pycuda.pid" ]; then
    echo "the background pycuda build did not finish well; its log ends:"; tail -5 "$PREP/pycuda-build.log"
  fi
  build_pycuda "$OUT/wheels" \
    && $PY -m pip install -q --no-index --no-deps --target "$SITE" "$OUT"/wheels/pycuda-*.whl \
    || { echo "pycuda build failed"; status=1; }
fi
$PY -c "import pycuda, pycuda.driver as d; d.init(); print('pycuda', pycuda.VERSION_TEXT, d.Device(0).name())" \
  || status=1

step "onnxruntime-gpu"
ort_wheel=$(ls "$WHL"/onnxruntime_gpu-*.whl 2>/dev/null | head -1)
if [ -z "$ort_wheel" ] && [ -f "$ORT_PIECES/SHA256SUMS" ]; then
  name=$(awk '{print $2}' "$ORT_PIECES/SHA256SUMS")
  cat "$ORT_PIECES/$name".part-* > "/tmp/$name" && (cd /tmp && sha256sum -c "$ORT_PIECES/SHA256SUMS") \
    && ort_wheel="/tmp/$name" || { echo "onnxruntime-gpu pieces incomplete or corrupt"; status=1; }
fi
if [ -n "$ort_wheel" ]; then
  $PY -m pip install -q --no-index --no-deps --target "$SITE/ort" "$ort_wheel" || status=1
  export PYTHONPATH="$SITE/ort:$PYTHONPATH"  # shadows the CPU onnxruntime
else
  echo "no onnxruntime-gpu carried: the ort-cuda checks will skip"
fi
$PY -c "import onnxruntime as o; o.preload_dlls() if hasattr(o, 'preload_dlls') else None; print('onnxruntime', o.__version__, o.get_available_providers())"

step "nvImageCodec (GPU JPEG decoding)"
nv_wheels=$(ls "$WHL"/nvidia_nvimgcodec*.whl "$WHL"/nvidia_nvjpeg-*.whl 2>/dev/null || true)
if [ -n "$nv_wheels" ]; then
  # nvidia/ of the interpreter (torch's CUDA libraries live there): add nvimgcodec/ and nvjpeg/ beside them
  NV_DIR=$($PY -c "import nvidia, os; print(os.path.realpath(list(nvidia.__path__)[0]))" 2>/dev/null || true)
  $PY -m pip install -q --no-index --no-deps --target "$SITE/nvimg" $nv_wheels || status=1
  if [ -n "$NV_DIR" ] && [ -w "$NV_DIR" ]; then
    for sub in "$SITE"/nvimg/nvidia/*/; do ln -sfn "$sub" "$NV_DIR/$(basename "$sub")"; done
  else
    echo "warning: $NV_DIR not writable; $SITE/nvimg goes on PYTHONPATH (its nvidia/ may hide torch's)"
    export PYTHONPATH="$PYTHONPATH:$SITE/nvimg"
  fi
  $PY -c "from nvidia import nvimgcodec as n; print('nvimgcodec', n.__version__)" || status=1
else
  echo "no nvImageCodec wheels carried: GPU decoding checks will skip"
fi

step "CUDA preprocessing kernel (build/kernels/preprocess.fatbin, used by the tests and the check)"
if [ -n "$NVCC" ] && command -v cmake >/dev/null; then
  cmake -S "$REPO" -B "$REPO/build" >/dev/null && cmake --build "$REPO/build" -j "$(nproc)" | tail -3 || status=1
else
  echo "nvcc or cmake missing: the kernel checks will skip"
fi

step "pytest -m gpu"
$PY -m pytest -q -ra -m gpu -p no:cacheprovider tests/runtime/gpu tests/kernels tests/engine \
  --junitxml="$OUT/pytest-gpu.xml" || status=1

step "benchmarks/gpu_check.py"
$PY benchmarks/gpu_check.py --out "$OUT" --budget-s "${BUDGET_S:-360}" --batches "${BATCHES:-1,8,32}" \
  --files "${FILES:-2000}" ${SECTIONS:+--sections "$SECTIONS"} ${QUICK:+--quick} || status=1

step "done (status $status); results in $OUT"
exit $status
