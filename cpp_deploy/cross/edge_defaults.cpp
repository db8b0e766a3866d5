// Edge default of emotion_predict when it is built for aarch64 (linked in by CMakeLists.txt only
// for aarch64 targets; the x86 build is unchanged).  Kept out of tools/emotion_predict.cpp so the
// tool's source stays one file for every target.
//
// MXNET_ENGINE_TYPE defaults to NaiveEngine: each operator runs on the calling thread (operators
// still use OpenMP).  It is the engine verified for this build: under qemu user-mode emulation no
// dynamically linked guest program that starts a second thread finishes on our CI host
// (cross/qemu_thread_check.sh), so the threaded engines (worker threads) could not be checked;
// docs/deployment.md, "ARM (aarch64) edge build".  An explicit MXNET_ENGINE_TYPE in the
// environment still wins.  MXNet reads the variable when its engine is first created (the first
// MXPredCreate), after this has run.
//
// Runs from .init_array, before main().
#include <cstdlib>

namespace {

void emx_edge_defaults() { setenv("MXNET_ENGINE_TYPE", "NaiveEngine", /*overwrite=*/0); }

__attribute__((used, section(".init_array"))) void (*const emx_edge_defaults_init)() = &emx_edge_defaults;

}  // namespace
