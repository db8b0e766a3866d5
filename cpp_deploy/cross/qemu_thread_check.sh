#!/usr/bin/env bash
# Does qemu-aarch64-static on this host finish an aarch64 program that starts a second thread?
# (docs/deployment.md, "ARM (aarch64) edge build": why the edge build defaults to NaiveEngine.)
#   cpp_deploy/cross/qemu_thread_check.sh [TIMEOUT_SECONDS]        prints one line per variant
set -uo pipefail
T="${1:-20}"
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
cat > "$TMP/join.c" <<'C'
#include <pthread.h>
#include <stdio.h>
static void* work(void* a) { return a; }
int main(void) { pthread_t t; void* r; pthread_create(&t, 0, work, (void*)7); pthread_join(t, &r);
                 printf("joined %ld\n", (long)r); return 0; }
C
cat > "$TMP/omp.c" <<'C'
#include <stdio.h>
int main(void) { double s = 0;
#pragma omp parallel for reduction(+:s)
  for (int i = 0; i < 100000; i++) s += i * 1e-9;
  printf("sum %f\n", s); return 0; }
C
aarch64-linux-gnu-gcc -O2 -pthread "$TMP/join.c" -o "$TMP/join" &&
aarch64-linux-gnu-gcc -O2 -pthread -static "$TMP/join.c" -o "$TMP/join_static" &&
aarch64-linux-gnu-gcc -O2 -fopenmp "$TMP/omp.c" -o "$TMP/omp" || { echo "error: cross compile failed"; exit 2; }
L=/usr/aarch64-linux-gnu
qemu-aarch64-static --version | head -n1
check() {   # name, command...
  local name=$1; shift
  local t0=$(date +%s.%N)
  timeout "$T" "$@" >/dev/null 2>&1; local rc=$?
  local dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  if [ $rc = 124 ]; then echo "$name: did not finish in ${T} s"; else echo "$name: exit $rc after $dt s"; fi
}
check "pthread_create+join, dynamic (qemu -L)" qemu-aarch64-static -L $L "$TMP/join"
check "pthread_create+join, static" qemu-aarch64-static "$TMP/join_static"
check "pthread_create+join, dynamic via ld-linux-aarch64.so.1" qemu-aarch64-static $L/lib/ld-linux-aarch64.so.1 --library-path $L/lib "$TMP/join"
check "OpenMP parallel for, 1 thread" env OMP_NUM_THREADS=1 qemu-aarch64-static -L $L "$TMP/omp"
check "OpenMP parallel for, 2 threads" env OMP_NUM_THREADS=2 qemu-aarch64-static -L $L "$TMP/omp"
