# CMake toolchain file: Linux aarch64 (arm64) with Debian's cross compiler
# (`apt-get install g++-aarch64-linux-gnu`).  Used by cross/build_aarch64.sh; usable on its own:
#
#   cmake -S cpp_deploy -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cpp_deploy/cross/aarch64-linux-gnu.cmake \
#         -DMXNET_ROOT=<unpacked aarch64 wheel>/mxnet
#
# The arm64 libraries libmxnet.so depends on (OpenBLAS, LAPACKE, libgfortran, from
# `dpkg --add-architecture arm64`) live in Debian's multiarch folders; the linker is told where
# (-rpath-link) so it can check libmxnet.so's dependencies without them going into the binary.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(EMX_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${EMX_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${EMX_CROSS_TRIPLE}-g++)

# Target headers/libraries only from the target sysroot and the given MXNET_ROOT; programs
# (cmake helpers) from the host.
set(CMAKE_FIND_ROOT_PATH /usr/${EMX_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

set(_emx_multiarch /usr/lib/${EMX_CROSS_TRIPLE})
string(APPEND CMAKE_EXE_LINKER_FLAGS_INIT
  " -Wl,-rpath-link,${_emx_multiarch} -Wl,-rpath-link,${_emx_multiarch}/openblas-pthread")
string(APPEND CMAKE_SHARED_LINKER_FLAGS_INIT
  " -Wl,-rpath-link,${_emx_multiarch} -Wl,-rpath-link,${_emx_multiarch}/openblas-pthread")
