#!/usr/bin/env bash
# On a lent GPU host, with .gpu/ from bench/gpu/prepare.sh carried: the default against COLMAP's own pipeline (cold
# and after a mapping change), then COLMAP's matcher in processes against its threads; first, when .gpu/ was packed
# with --learned, whether ALIKED + LightGlue repeat (bench/bench_gpu_repro.py on the first root, about 2 minutes).
# Results go to $OUT (the device tool's folder that comes back), else /tmp/imc-gpu-out. About 3 minutes with ets and
# toy_fb82.
#
#   bench/gpu/run.sh [bench_pipeline.py options, e.g. --variants default default:matching.colmap_threads=-1]
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
out=${OUT:-/tmp/imc-gpu-out}
mkdir -p "$out"
export PYTHONPATH="$PWD/.gpu/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 GLOG_minloglevel=2
if ! "$PY" -c "import pycolmap" 2>/dev/null; then
    mkdir -p /tmp/imc-site && tar -xJf .gpu/pycolmap.tar.xz -C /tmp/imc-site || exit 1
    export PYTHONPATH="/tmp/imc-site:$PYTHONPATH"
fi
if [ -d .gpu/wheels ] && ! "$PY" -c "import kornia" 2>/dev/null; then  # from prepare.sh --learned
    mkdir -p /tmp/imc-site /tmp/imc-weights
    for w in .gpu/wheels/*.whl; do "$PY" -m zipfile -e "$w" /tmp/imc-site || exit 1; done
    for w in .gpu/weights/*.xz; do xz -dc "$w" > "/tmp/imc-weights/$(basename "$w" .xz)" || exit 1; done
    export PYTHONPATH="/tmp/imc-site:$PYTHONPATH" IMC_WEIGHTS_DIR=/tmp/imc-weights
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L
roots=$(ls .gpu/roots)
if [ -d .gpu/wheels ]; then
    first=$(echo "$roots" | head -n 1)
    "$PY" bench/bench_gpu_repro.py --data-root ".gpu/roots/$first" --runs 3 --out "$out/gpu_repro.md" \
        > "$out/repro.log" 2>&1 || tail -n 20 "$out/repro.log"
    cat "$out/gpu_repro.md" 2>/dev/null
fi
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(--variants default)
"$PY" bench/bench_pipeline.py --root-dir .gpu/roots --datasets $roots "${variants[@]}" --anchor --rerun-mapping \
    --out "$out/pipeline_gpu_host.md" > "$out/pipeline.log" 2>&1 || tail -n 20 "$out/pipeline.log"
cat "$out/pipeline_gpu_host.md" 2>/dev/null
"$PY" bench/bench_colmap_matcher.py --root-dir .gpu/roots --datasets $roots --repeats 2 \
    --out "$out/colmap_matcher_gpu_host.md" > "$out/matcher.log" 2>&1 || tail -n 20 "$out/matcher.log"
cat "$out/colmap_matcher_gpu_host.md" 2>/dev/null
