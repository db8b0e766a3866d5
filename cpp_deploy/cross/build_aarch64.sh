#!/usr/bin/env bash
# Cross-build emotion_predict for Linux aarch64 (Raspberry Pi 4/5 64-bit OS, Jetson, Graviton)
# against PyPI's manylinux2014_aarch64 mxnet==1.9.1 wheel, and lay out a deployable folder:
#
#   cpp_deploy/cross/build_aarch64.sh [WORK_DIR]        (make cross-aarch64)
#
#   WORK_DIR/wheel/          the downloaded aarch64 wheel (pip cache; never committed)
#   WORK_DIR/mxnet/          its unpacked mxnet/ folder (include/, libmxnet.so, libgfortran.so.5)
#   WORK_DIR/stubs/          libarmpl_lp64_mp.so, libamath.so, libastring.so link stubs
#   WORK_DIR/build/          the CMake cross build
#   WORK_DIR/emotion_predict-aarch64/   the bundle: bin/ lib/ lib/armpl-stubs/ run.sh README.txt
#
# The wheel's libmxnet.so was linked against the Arm Performance Libraries (ArmPL), which the
# wheel does not ship.  Every symbol it takes from them is a CBLAS/LAPACK(E) routine that
# OpenBLAS + LAPACKE also export, so three stub libraries with ArmPL's sonames, the first
# depending on Debian's arm64 OpenBLAS/LAPACKE/LAPACK, satisfy both the linker and the loader.
# On a device with ArmPL installed, point EMX_ARMPL_DIR at it and the stubs are not used.
#
# Environment: PYTHON (pip for the download; default: the project venv, else python3),
# EMX_MXNET_WHEEL (use this wheel file instead of downloading), EMX_WHEEL_DIR (where the download
# is cached; default WORK_DIR/wheel), JOBS (default 2).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="$(dirname "$HERE")"                    # cpp_deploy/
ROOT="$(dirname "$SRC")"
WORK="${1:-$ROOT/work/cross-aarch64}"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
JOBS="${JOBS:-2}"
TRIPLE=aarch64-linux-gnu
MULTIARCH=/usr/lib/$TRIPLE
MXNET_VERSION=1.9.1
APT_HINT="dpkg --add-architecture arm64 && apt-get update && apt-get install -y g++-aarch64-linux-gnu qemu-user-static libopenblas0-pthread:arm64 liblapacke:arm64 libgfortran5:arm64"

die() { echo "error: $*" >&2; exit 2; }

# ---- 1. tools and arm64 libraries --------------------------------------------------------------
command -v cmake >/dev/null || die "cmake is not installed; run: apt-get install -y cmake"
command -v $TRIPLE-g++ >/dev/null || die "no aarch64 cross compiler ($TRIPLE-g++); run: $APT_HINT"
for lib in openblas-pthread/libopenblas.so.0 liblapacke.so.3 openblas-pthread/liblapack.so.3; do
  [ -e "$MULTIARCH/$lib" ] || die "no arm64 $lib under $MULTIARCH; run: $APT_HINT"
done

# ---- 2. the aarch64 MXNet wheel ----------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
WHEEL_DIR="${EMX_WHEEL_DIR:-$WORK/wheel}"
WHEEL="${EMX_MXNET_WHEEL:-}"
if [ -z "$WHEEL" ]; then
  WHEEL="$(ls "$WHEEL_DIR"/mxnet-$MXNET_VERSION-*aarch64*.whl 2>/dev/null | head -n1 || true)"
fi
if [ -z "$WHEEL" ]; then
  echo "downloading mxnet==$MXNET_VERSION for manylinux2014_aarch64 (about 36 MB)"
  "$PYTHON" -m pip download -q --only-binary=:all: --platform manylinux2014_aarch64 \
      --python-version 311 --no-deps "mxnet==$MXNET_VERSION" -d "$WHEEL_DIR" \
    || die "pip could not download the aarch64 mxnet==$MXNET_VERSION wheel (no network or index?); set EMX_MXNET_WHEEL=/path/to/the.whl"
  WHEEL="$(ls "$WHEEL_DIR"/mxnet-$MXNET_VERSION-*aarch64*.whl | head -n1)"
fi
MXNET="$WORK/mxnet"
if [ ! -f "$MXNET/libmxnet.so" ] || [ "$WHEEL" -nt "$MXNET/libmxnet.so" ]; then
  rm -rf "$MXNET" "$WORK/unpack"
  # only the parts a C++ deployment needs: headers, libmxnet.so, libgfortran.so.5
  "$PYTHON" - "$WHEEL" "$WORK/unpack" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [n for n in z.namelist()
                               if n.startswith("mxnet/include/") or n in ("mxnet/libmxnet.so", "mxnet/libgfortran.so.5")])
PY
  mv "$WORK/unpack/mxnet" "$MXNET" && rm -rf "$WORK/unpack"
fi
[ -f "$MXNET/include/mxnet/c_predict_api.h" ] || die "$WHEEL has no mxnet/include/mxnet/c_predict_api.h"

# ---- 3. ArmPL link stubs over OpenBLAS/LAPACKE -------------------------------------------------
STUBS="$WORK/stubs"
mkdir -p "$STUBS"
echo "/* emotion_mx: ArmPL soname stub; the symbols come from its dependencies */" > "$STUBS/stub.c"
$TRIPLE-gcc -shared -fPIC -o "$STUBS/libarmpl_lp64_mp.so" -Wl,-soname,libarmpl_lp64_mp.so "$STUBS/stub.c" \
  -Wl,--no-as-needed "$MULTIARCH/openblas-pthread/libopenblas.so.0" "$MULTIARCH/liblapacke.so.3" \
  "$MULTIARCH/openblas-pthread/liblapack.so.3"
for name in libamath.so libastring.so; do   # libm/libc cover what libmxnet.so takes from these
  $TRIPLE-gcc -shared -fPIC -o "$STUBS/$name" -Wl,-soname,$name "$STUBS/stub.c"
done

# ---- 4. cross-compile the predictor library and emotion_predict --------------------------------
BUILD="$WORK/build"
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$HERE/aarch64-linux-gnu.cmake" \
  -DMXNET_ROOT="$MXNET" \
  -DEMX_INSTALL_RPATH='$ORIGIN/../lib' \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$STUBS" >"$WORK/cmake.log" 2>&1 \
  || { tail -n 20 "$WORK/cmake.log" >&2; die "cmake configure failed (log: $WORK/cmake.log)"; }
cmake --build "$BUILD" -j "$JOBS" >>"$WORK/cmake.log" 2>&1 \
  || { tail -n 20 "$WORK/cmake.log" >&2; die "cross build failed (log: $WORK/cmake.log)"; }

# ---- 5. the deployable bundle ------------------------------------------------------------------
OUT="$WORK/emotion_predict-aarch64"
rm -rf "$OUT"
cmake --install "$BUILD" --prefix "$OUT" >>"$WORK/cmake.log" 2>&1
cp "$MXNET/libmxnet.so" "$MXNET/libgfortran.so.5" "$OUT/lib/"
mkdir -p "$OUT/include/mxnet" && cp "$MXNET/include/mxnet/c_predict_api.h" "$OUT/include/mxnet/"
mkdir -p "$OUT/lib/armpl-stubs"
cp "$STUBS"/lib*.so "$OUT/lib/armpl-stubs/"
cp "$HERE/run.sh" "$OUT/run.sh"
chmod +x "$OUT/run.sh"
cat > "$OUT/README.txt" <<EOF
emotion_predict for Linux aarch64, built against PyPI mxnet==$MXNET_VERSION (manylinux2014_aarch64).

  ./run.sh --model EXPORTED_MODEL_DIR --input audio=audio.npy --input audio_mask=audio_mask.npy

bin/emotion_predict        the C++ tool (RPATH \$ORIGIN/../lib)
lib/libmxnet.so            from the wheel (needs glibc >= 2.17, libgomp, libstdc++)
lib/libgfortran.so.5       from the wheel
lib/armpl-stubs/           libarmpl_lp64_mp.so, libamath.so, libastring.so: sonames of the Arm
                           Performance Libraries, forwarding to OpenBLAS + LAPACKE.  On the device:
                             apt-get install libopenblas0-pthread liblapacke libgomp1
                           or install ArmPL and run with EMX_ARMPL_DIR=/opt/arm/armpl_.../lib.
lib/libemotion_mx_predictor.a, include/   to link the Predictor class into your own program.

run.sh sets LD_LIBRARY_PATH and MXNET_ENGINE_TYPE=NaiveEngine (export another engine to
override; bin/emotion_predict defaults to NaiveEngine too), and runs under qemu-aarch64-static
(one OpenMP thread) when the host is not aarch64.  fp32 exports matched the x86 build; INT8
exports run (oneDNN's aarch64 kernels) but do not reproduce x86 INT8 outputs: see
docs/deployment.md.
EOF
file "$OUT/bin/emotion_predict" 2>/dev/null | sed 's/^/built: /' || true
echo "bundle: $OUT"
echo "run:    $OUT/run.sh --model DIR --input NAME=FILE.npy ..."
