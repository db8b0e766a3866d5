#!/bin/sh
# emotion_predict from the aarch64 bundle (cpp_deploy/cross/build_aarch64.sh), with the edge
# defaults: libraries from this folder, MXNet's NaiveEngine, and qemu-aarch64-static when the host is not aarch64 (tests, CI).  Arguments go to emotion_predict.
HERE=$(cd "$(dirname "$0")" && pwd)

# NaiveEngine runs each operator synchronously on the calling thread (operators still use
# OpenMP): the threaded engines could not be verified here (under qemu no dynamically linked guest
# program with a second thread finishes; docs/deployment.md, "ARM (aarch64) edge build").
# Export another engine to override.
MXNET_ENGINE_TYPE=${MXNET_ENGINE_TYPE:-NaiveEngine}
export MXNET_ENGINE_TYPE
LD_LIBRARY_PATH="$HERE/lib:${EMX_ARMPL_DIR:-$HERE/lib/armpl-stubs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

case "$(uname -m)" in
  aarch64|arm64)
    export LD_LIBRARY_PATH
    exec "$HERE/bin/emotion_predict" "$@" ;;
esac
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [ -z "$QEMU" ]; then
  echo "error: this is an aarch64 build and the host is $(uname -m); install qemu-user-static to emulate it" >&2
  exit 2
fi
QEMU_LD_PREFIX=${QEMU_LD_PREFIX:-/usr/aarch64-linux-gnu}
export QEMU_LD_PREFIX
# Under qemu user-mode emulation on our CI host, dynamically linked guest programs that start a
# second thread never finish (cross/qemu_thread_check.sh: a 6-line pthread program hangs too), so
# one OpenMP/OpenBLAS thread by default there; a real aarch64 device runs operators multi-threaded.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS
LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/usr/lib/aarch64-linux-gnu/openblas-pthread:/usr/lib/aarch64-linux-gnu"
export LD_LIBRARY_PATH
exec "$QEMU" "$HERE/bin/emotion_predict" "$@"
