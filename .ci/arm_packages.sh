#!/usr/bin/env bash
# Packages for the emulated aarch64 build (tests/test_deploy_arm.py). Idempotent and tolerant:
# when they cannot be installed (not root, no apt, no network) it says why and the test skips.
PKGS="g++-aarch64-linux-gnu qemu-user-static libopenblas0-pthread:arm64 liblapacke:arm64 libgfortran5:arm64 zlib1g:arm64"
have() {
  command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64-static >/dev/null &&
    [ -e /usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0 ] &&
    [ -e /usr/lib/aarch64-linux-gnu/liblapacke.so.3 ] && [ -e /usr/lib/aarch64-linux-gnu/libz.so.1 ]
}
if have; then echo "arm: cross toolchain and qemu present"; exit 0; fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "arm: not root or no apt-get; the ARM test will skip (run: dpkg --add-architecture arm64 && apt-get update && apt-get install -y $PKGS)"
  exit 0
fi
{ dpkg --add-architecture arm64 && apt-get update -q &&
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PKGS; } >/tmp/emx_arm_apt.log 2>&1 \
  || echo "arm: apt-get failed ($(tail -n 1 /tmp/emx_arm_apt.log)); the ARM test will skip"
exit 0
