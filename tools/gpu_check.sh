#!/usr/bin/env bash
# The GPU check (issue 17) in one go: the GPU path of ostransfer run on a real GPU.
#
#   tools/gpu_check.sh --prepare           here (network): wheels, weights, graphs -> .whl/gpu pieces
#   tools/gpu_check.sh OUTDIR              on the GPU machine, once per carried piece (docs/gpu.md)
#   tools/gpu_check.sh --dry-run OUTDIR    here: every step, the CUDA-only ones skipped, tiny sizes
#
# On the GPU machine each run carries .whl/gpu/index.json and one piece; the script stashes
# the piece outside the checkout (kept while the machine stays warm) and stops; the run that
# completes the stash goes on: join and check the pieces, install onnxruntime-gpu with pip
# --target, make the model files from the weights, check the CUDA provider, run the GPU
# tests (pytest -k "cuda or cupy"), `ostransfer bench --device cuda` at 512 and 1024 px
# against torch, and a default 512 px and a 1024 px `ostransfer stylize --device cuda`.
# Each step is timed and logged under OUTDIR; a failed step is recorded and the next runs.
# The whole run keeps inside GPU_CHECK_SECONDS (default 540; the device tool stops a
# command at 600). OUTDIR ends with at most 8 files (what the device tool brings back):
# gpu_check.log, summary.md, pytest.xml, bench.json, stylize_512.png, stylize_1024.png.
#
# Environment: PYTHON (default python3), GPU_CHECK_WORK (default /tmp/ostransfer-gpu, or a
# fresh temporary folder with --dry-run), GPU_CHECK_SECONDS, DRY_RUN=1 (as --dry-run).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PIECES="$REPO/.whl/gpu"
SOURCES="$REPO/.whl/src"
ORT_GPU="onnxruntime-gpu==1.31.1"
EXTRA_WHEELS=("array-api-compat==1.16.0")  # ostransfer's one import the GPU machine lacks
CONTENT="$REPO/ostransfer/data/content_chelsea.jpg"
STYLE="$REPO/ostransfer/data/style_starry_night.jpg"
PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}
PREPARE=0
OUTDIR=""

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --prepare) PREPARE=1 ;;
        -h|--help) usage ;;
        -*) echo "unknown option $1" >&2; usage ;;
        *) [ -z "$OUTDIR" ] || usage; OUTDIR=$1 ;;
    esac
    shift
done

# --------------------------------------------------------------------------------------
# --prepare: on a machine with PyPI (this one), once; nothing here needs a GPU.
if [ "$PREPARE" = 1 ]; then
    mkdir -p "$SOURCES"
    echo "== downloading $ORT_GPU and ${EXTRA_WHEELS[*]} (cp312, manylinux x86_64) into $SOURCES"
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$SOURCES" "$ORT_GPU" "${EXTRA_WHEELS[@]}"
    echo "== the VGG16 weights and graph files"
    mapfile -t MODEL_FILES < <(cd "$REPO" && PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -c '
from ostransfer.nets import vgg16_graphs as g
from ostransfer.nets.provision import ensure_models, fetch_weights
folder = ensure_models()
print(fetch_weights())
for name in (g.FORWARD_FILE, g.VJP_FILE, g.VJP_SCATTER_FILE):
    print(folder / name)')
    WHEELS=("$SOURCES"/onnxruntime_gpu-1.31.1-cp312-*.whl "$SOURCES"/array_api_compat-1.16.0-*.whl)
    echo "== packing into $PIECES"
    "$PYTHON" "$REPO/tools/wheel_pieces.py" pack --root "$REPO" --out "$PIECES" \
        "${WHEELS[@]}" "${MODEL_FILES[@]}"
    ls -l "$PIECES"
    exit 0
fi

[ -n "$OUTDIR" ] || usage
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ "$DRY_RUN" = 1 ]; then
    WORK=${GPU_CHECK_WORK:-$(mktemp -d /tmp/ostransfer-gpu-dry.XXXXXX)}
else
    WORK=${GPU_CHECK_WORK:-/tmp/ostransfer-gpu}
fi
mkdir -p "$WORK"
LOG="$OUTDIR/gpu_check.log"
SUMMARY="$OUTDIR/summary.md"
exec > >(tee -a "$LOG") 2>&1

START=$(date +%s)
BUDGET=${GPU_CHECK_SECONDS:-540}
ROWS=()
FAILED=0

now() { date +%s.%N; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# step NAME MAX_SECONDS COMMAND...: run COMMAND (a shell function or a program), timed;
# a program is stopped after MAX_SECONDS or when the run's budget ends, whichever is first.
step() {
    local name=$1 max=$2 t0 t1 rc=0 status limit
    shift 2
    limit=$(( $(left) - 15 ))
    [ "$limit" -lt "$max" ] || limit=$max
    echo
    echo "=================== $name ($(date -u +%H:%M:%S), at most ${limit}s)"
    if [ "$limit" -lt 10 ]; then
        status="skipped: no time left"
        ROWS+=("| $name | $status | 0 |")
        echo "-- $name: $status"
        return 0
    fi
    t0=$(now)
    if [ "$(type -t "$1")" = function ]; then
        "$@" || rc=$?
    else
        timeout --kill-after=10 "$limit" "$@" || rc=$?
    fi
    t1=$(now)
    case $rc in
        0) status=ok ;;
        124|137) status="FAILED: timed out after ${limit}s"; FAILED=$((FAILED + 1)) ;;
        *) status="FAILED: exit $rc"; FAILED=$((FAILED + 1)) ;;
    esac
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    ROWS+=("| $name | $status | $secs |")
    echo "-- $name: $status (${secs}s)"
    return 0
}

skip() {  # skip NAME WHY
    ROWS+=("| $1 | skipped: $2 | 0 |")
    echo
    echo "=================== $1: skipped ($2)"
}

write_summary() {
    {
        echo "# GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ)$([ "$DRY_RUN" = 1 ] && echo ' (dry run)')"
        echo
        echo "| step | result | seconds |"
        echo "| --- | --- | --- |"
        printf '%s\n' "${ROWS[@]}"
        echo
        echo "$FAILED failed; $(( $(date +%s) - START )) s in all; work folder $WORK"
        "$PYTHON" - "$OUTDIR" <<'PY' || true
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path

out = Path(sys.argv[1])
if (out / "pytest.xml").is_file():
    suite = ET.parse(out / "pytest.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    print(f"\npytest: {n['tests']} tests, {n['failures']} failed, {n['errors']} errors, "
          f"{n['skipped']} skipped")
    for case in suite.iter("testcase"):
        for kind in ("failure", "error", "skipped"):
            node = case.find(kind)
            if node is not None:
                why = (node.get("message") or "").splitlines()[0][:150] if node.get("message") else ""
                print(f"- {kind}: {case.get('name')}: {why}")
if (out / "bench.json").is_file():
    report = json.loads((out / "bench.json").read_text())
    print(f"\nbench on {report['settings']['device']} "
          f"(N={report['settings']['samples']}, M={report['settings']['style_samples']}):\n")
    print("| px | ours evals/s | torch evals/s | eval speed-up | ours VGG s | torch VGG s "
          "| VGG speed-up | ours VGG GFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in report["results"]:
        o, t = r["ours"], r.get("torch") or {}
        f = lambda v, spec=".3g": format(v, spec) if isinstance(v, (int, float)) else "-"
        print(f"| {r['size']} | {f(o['evals_per_s'])} | {f(t.get('evals_per_s'))} "
              f"| {f(r.get('objective_speedup'))} | {f(o.get('vgg_s'))} | {f(t.get('vgg_s'))} "
              f"| {f(r.get('vgg_speedup'))} | {f(o.get('vgg_gflops'), '.0f')} |")
PY
    } > "$SUMMARY"
    echo
    cat "$SUMMARY"
}

# -------------------------------------------------------------------------------- steps
environment() {
    uname -a
    "$PYTHON" -c 'import sys; print("python", sys.version.split()[0], sys.executable)' || return
    if command -v nvidia-smi > /dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    else
        echo "no nvidia-smi"
    fi
    "$PYTHON" -m pip list 2>/dev/null | grep -iE '^(numpy|scipy|onnx|onnxruntime|onnxruntime-gpu|cupy|cupy-cuda13x|torch|pillow|typer|rich|pytest|hypothesis|array.api.compat|nvidia-cudnn-cu13|nvidia-cuda-runtime) ' || true
    df -h "$WORK" | tail -1
    echo "ostransfer checkout: $REPO ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git'))"
}

RECEIVE_RC=0
receive() {
    if [ "$DRY_RUN" = 1 ]; then
        # What the runs there do, one carried piece at a time.
        local stage="$WORK/carried" piece rc
        for piece in "$PIECES"/part-*; do
            rm -rf "$stage"; mkdir -p "$stage"
            cp "$PIECES/index.json" "$piece" "$stage/"
            rc=0
            "$PYTHON" "$REPO/tools/wheel_pieces.py" receive --out "$stage" --stash "$WORK/stash" || rc=$?
            [ "$rc" = 0 ] || [ "$rc" = 3 ] || return "$rc"
        done
        RECEIVE_RC=$rc
        return 0
    fi
    RECEIVE_RC=0
    "$PYTHON" "$REPO/tools/wheel_pieces.py" receive --out "$PIECES" --stash "$WORK/stash" \
        || RECEIVE_RC=$?
    [ "$RECEIVE_RC" = 0 ] || [ "$RECEIVE_RC" = 3 ]
}

bundle_id() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["bundle_sha256"])' "$WORK/stash/index.json"; }

unpack() {
    # A rerun on the same warm machine finds the bundle unpacked (and installed) already.
    if [ -f "$WORK/bundle.done" ] && [ "$(cat "$WORK/bundle.done")" = "$(bundle_id)" ]; then
        echo "unpacked by an earlier run: $WORK/bundle"
        return 0
    fi
    rm -rf "$WORK/bundle" "$WORK/bundle.done" "$WORK/site.done"
    "$PYTHON" "$REPO/tools/wheel_pieces.py" unpack --stash "$WORK/stash" --into "$WORK/bundle" \
        || return
    bundle_id > "$WORK/bundle.done"
}

install() {
    local target=()
    if [ -f "$WORK/site.done" ] && [ "$DRY_RUN" != 1 ]; then
        echo "installed by an earlier run: $WORK/site"
        export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
        return 0
    fi
    rm -rf "$WORK/site"
    if [ "$DRY_RUN" = 1 ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
        # Another Python here: install for the GPU machine's (cp312) all the same.
        target=(--only-binary=:all: --python-version 3.12 --implementation cp
                --platform manylinux_2_28_x86_64)
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --disable-pip-version-check "${target[@]}" --target "$WORK/site" "$WORK"/bundle/*.whl \
        || return
    ls "$WORK/site" "$WORK/site/onnxruntime/capi" || return
    if [ "$DRY_RUN" = 1 ]; then
        # The rest of the dry run uses this machine's onnxruntime (no CUDA here).
        [ -f "$WORK/site/onnxruntime/capi/libonnxruntime_providers_cuda.so" ]
    else
        export PYTHONPATH="$WORK/site:$REPO${PYTHONPATH:+:$PYTHONPATH}"
        "$PYTHON" -c 'import onnxruntime as o, array_api_compat as a
print("onnxruntime", o.__version__, o.__file__, o.get_available_providers())
print("array_api_compat", a.__version__, a.__file__)' || return
        touch "$WORK/site.done"
    fi
}

libraries() {
    # The CUDA provider has no search path: give it the nvidia pip packages' libraries
    # (CUDA 13: nvidia/cu13/lib; cuDNN 9: nvidia/cudnn/lib) of this machine's Python.
    local dirs
    dirs=$("$PYTHON" -c '
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
for base in list(nvidia.__path__):
    for d in sorted(glob.glob(os.path.join(base, "*", "lib"))):
        if glob.glob(os.path.join(d, "*.so*")):
            print(d)') || return
    if [ -z "$dirs" ]; then
        echo "no nvidia pip libraries found"
        return 0
    fi
    echo "$dirs"
    LD_LIBRARY_PATH="$(echo "$dirs" | paste -sd:)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
}

models() {
    # The model files from the carried weights (numpy only; the graph files carried beside
    # them), checked against the manifest; the weights where the tests look for them.
    local models="$WORK/models" cache="$WORK/cache"
    mkdir -p "$models" "$cache/ostransfer/weights"
    cp "$WORK/bundle/vgg16.ckpt" "$cache/ostransfer/weights/vgg16.ckpt" || return
    cp "$WORK"/bundle/vgg16_*.onnx "$models/" || return
    cp "$REPO/models/manifest.json" "$models/" || return
    PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$models" "$WORK/bundle/vgg16.ckpt" <<'PY' || return
import sys
from pathlib import Path

from ostransfer.files import write_atomic
from ostransfer.nets import vgg16_graphs
from ostransfer.nets.provision import check_dir, export_models
from ostransfer.nets.weights import load_vgg16_weights

folder, ckpt = Path(sys.argv[1]), Path(sys.argv[2])
blob, _ = vgg16_graphs._pack_weights(load_vgg16_weights(ckpt))
write_atomic(folder / vgg16_graphs.WEIGHTS_FILE, blob)
bad = check_dir(folder)
if bad:
    print("carried files differ from the manifest:", bad, "- exporting with onnx instead")
    export_models(folder, ckpt)
    bad = check_dir(folder)
print("model files in", folder, "match the manifest" if not bad else f"DIFFER: {bad}")
sys.exit(1 if bad else 0)
PY
    export OSTRANSFER_MODELS="$models" XDG_CACHE_HOME="$cache"
}

provider() {
    # Where the recipe fails, said plainly: the onnxruntime build, the CUDA provider in a
    # session (verbose log on), CuPy's device, then the engine's forward and VJP at 64 px.
    "$PYTHON" - <<'PY'
import sys
import onnxruntime as ort
print("onnxruntime", ort.__version__, ort.__file__)
print("providers", ort.get_available_providers())
print(ort.get_build_info() if hasattr(ort, "get_build_info") else "")
import cupy
print("cupy", cupy.__version__, cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
      "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion())
from ostransfer.arrays import cuda_problems
print("cuda_problems()", cuda_problems())
from ostransfer.nets import vgg16_graphs
from ostransfer.nets.provision import ensure_models
folder = ensure_models()
options = ort.SessionOptions()
options.log_severity_level = 1
session = ort.InferenceSession(str(folder / vgg16_graphs.VJP_SCATTER_FILE), options,
                               providers=[("CUDAExecutionProvider", {"use_tf32": "0"}),
                                          "CPUExecutionProvider"])
print("scatter VJP session providers", session.get_providers())
from ostransfer.nets.engine import VGGFeatures
from ostransfer.nets.vgg16 import FEATURE_LAYERS
engine = VGGFeatures(device="cuda")
image = cupy.random.default_rng(0).random((64, 64, 3), dtype=cupy.float32)
maps = engine.forward(image)
grad = engine.backward({n: cupy.ones_like(maps[n]) for n in FEATURE_LAYERS})
print("engine providers", engine._forward.get_providers(), engine._vjp.get_providers())
print("64 px forward + VJP: |grad| =", float(cupy.linalg.norm(grad)))
sys.exit(0 if session.get_providers()[0] == "CUDAExecutionProvider" else 1)
PY
}

# ------------------------------------------------------------------------------- the run
echo "GPU check: $([ "$DRY_RUN" = 1 ] && echo 'DRY RUN (the CUDA steps skipped), ')checkout $REPO, work $WORK, out $OUTDIR, budget ${BUDGET}s"
step environment 30 environment
step receive 120 receive
if [ "$RECEIVE_RC" = 3 ]; then
    echo "waiting for more pieces: carry the next one in the next run (docs/gpu.md)"
    write_summary
    exit 0
fi
step unpack 150 unpack
step install 150 install
step libraries 30 libraries
step models 60 models
export PYTHONUNBUFFERED=1
cd "$REPO"
if [ "$DRY_RUN" = 1 ]; then
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    skip provider "dry run: needs CUDA"
    step pytest-collect 120 "$PYTHON" -m pytest -q -p no:cacheprovider --collect-only \
        -k "cuda or cupy" tests
    step pytest 240 "$PYTHON" -m pytest -q -rs -p no:cacheprovider \
        --junitxml "$OUTDIR/pytest.xml" tests/test_gpu.py
    step bench 240 "$PYTHON" -m ostransfer.cli bench --sizes 64 --repeat 1 --samples 64 \
        --style-samples 200 --device cpu -o "$OUTDIR/bench.json"
    step stylize-512 150 "$PYTHON" -m ostransfer.cli stylize "$CONTENT" "$STYLE" \
        -o "$OUTDIR/stylize_512.png" --size 64 --evaluations 3 --device cpu --overwrite --quiet
    step stylize-1024 240 "$PYTHON" -m ostransfer.cli stylize "$CONTENT" "$STYLE" \
        -o "$OUTDIR/stylize_1024.png" --size 96 --evaluations 3 --device cpu --overwrite --quiet
else
    # Float32 against float32: torch lets cuDNN use TF32 for convolutions by default (our
    # engine turns it off); NVIDIA_TF32_OVERRIDE=0 turns it off in cuBLAS and cuDNN for both.
    export NVIDIA_TF32_OVERRIDE=0
    unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE
    step provider 120 provider
    step pytest 240 "$PYTHON" -m pytest -q -rs -p no:cacheprovider \
        --junitxml "$OUTDIR/pytest.xml" -k "cuda or cupy" tests
    step bench 200 "$PYTHON" -m ostransfer.cli bench --sizes 512,1024 --device cuda --torch \
        -o "$OUTDIR/bench.json"
    step stylize-512 120 "$PYTHON" -m ostransfer.cli stylize "$CONTENT" "$STYLE" \
        -o "$OUTDIR/stylize_512.png" --device cuda --overwrite --quiet
    step stylize-1024 200 "$PYTHON" -m ostransfer.cli stylize "$CONTENT" "$STYLE" \
        -o "$OUTDIR/stylize_1024.png" --size 1024 --device cuda --overwrite --quiet
fi
echo
echo "files in $OUTDIR:"
ls -l "$OUTDIR"
write_summary
[ "$(find "$OUTDIR" -maxdepth 1 -type f | wc -l)" -le 8 ] || echo "warning: more than 8 files in $OUTDIR: the device tool brings back 8"
exit 0
