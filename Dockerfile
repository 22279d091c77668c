# inferd image. Two variants from one file, chosen by one build argument:
#
#   docker build -t inferd:gpu .                          # default: CUDA (LibTorch from a PyTorch CUDA image)
#   docker build -t inferd:cpu --build-arg VARIANT=cpu .  # CPU: Debian 13 + Debian's libtorch 2.6
#
# Needs BuildKit (the default builder since Docker 23; DOCKER_BUILDKIT=1 on
# 20.10), which builds only the stages the chosen variant uses.
#
# GPU base images: any image with a CUDA-enabled `torch` for python3 (pip or
# conda) and apt. BASE_BUILD must have the compiler-facing bits (headers come
# with the torch package); BASE_RUNTIME must have the same torch at the same
# path, e.g. the -devel/-runtime pair of one pytorch/pytorch tag:
#   --build-arg BASE_BUILD=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel
#   --build-arg BASE_RUNTIME=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
# Models under models/ are baked in at /models; mount a volume over /models to
# serve others.

ARG VARIANT=gpu
ARG BASE_BUILD=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-devel
ARG BASE_RUNTIME=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ARG CPU_BASE=debian:trixie-slim

# ---------------------------------------------------------------- GPU build
FROM ${BASE_BUILD} AS build-gpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libmicrohttpd-dev libcjson-dev \
      libturbojpeg0-dev libpng-dev zlib1g-dev libgrpc-dev libprotobuf-c-dev protobuf-c-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include include
COPY proto proto
COPY shim shim
COPY src src
COPY tools tools
# TORCH_DIR is python's torch package (include/ and lib/); the Makefile turns
# CUDA on when it finds lib/libtorch_cuda.so. The shim must use the same C++
# ABI as that torch build (pip wheels before 2.7 use the old one).
RUN set -eu; \
    PY=$(command -v python3 || command -v python); \
    T=$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))'); \
    ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))'); \
    echo "torch at $T (C++11 ABI: $ABI)"; \
    CXXFLAGS="-D_GLIBCXX_USE_CXX11_ABI=$ABI" make -j"$(nproc)" TORCH_DIR="$T" all; \
    make TORCH_DIR="$T" help | grep -q 'CUDA: yes' || echo "warning: torch at $T has no libtorch_cuda.so: CPU-only build"

# -------------------------------------------------------------- GPU runtime
FROM ${BASE_RUNTIME} AS runtime-gpu
ARG DEBIAN_FRONTEND=noninteractive
# libmicrohttpd12 is libmicrohttpd12t64 (and libpng16-16 libpng16-16t64) on
# Ubuntu 24.04 and later; Ubuntu's TurboJPEG runtime is libturbojpeg.
RUN apt-get update \
 && (apt-get install -y --no-install-recommends libmicrohttpd12 libcjson1 libturbojpeg libpng16-16 zlib1g \
     || apt-get install -y --no-install-recommends libmicrohttpd12t64 libcjson1 libturbojpeg zlib1g \
          libpng16-16t64) \
 && (apt-get install -y --no-install-recommends libgrpc29 libprotobuf-c1 \
     || apt-get install -y --no-install-recommends libgrpc29t64 libprotobuf-c1) \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build-gpu /src/build/inferd /src/build/inferd-probe /usr/local/bin/
# The binary's rpath names the build image's torch and CUDA runtime folders;
# if this image keeps a library elsewhere (conda vs pip layouts), add that
# folder to the loader's path, then fail the build if anything is missing.
RUN set -eu; \
    for lib in $(ldd /usr/local/bin/inferd | awk '/not found/{print $1}'); do \
        f=$(find / -xdev -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1); \
        [ -n "$f" ] && dirname "$f" >> /etc/ld.so.conf.d/inferd.conf; \
    done; \
    ldconfig; \
    if ldd /usr/local/bin/inferd | grep 'not found'; then echo "inferd: missing libraries" >&2; exit 1; fi
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    INFERD_DEVICES=auto

# ---------------------------------------------------------------- CPU build
FROM ${CPU_BASE} AS build-cpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libtorch-dev libmicrohttpd-dev libcjson-dev \
      libturbojpeg0-dev libpng-dev zlib1g-dev libgrpc-dev libprotobuf-c-dev protobuf-c-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include include
COPY proto proto
COPY shim shim
COPY src src
COPY tools tools
# No python torch here: the Makefile uses Debian's libtorch-dev (2.6 on
# Debian 13, whose AOTInductor loader header turns .pt2 support on).
RUN make -j"$(nproc)" all && make help | grep -q '.pt2: yes'

# ------------------------------------------------------ CPU .pt2 export
# The default model as an AOTInductor package, exported by python torch 2.6
# (its compile step needs g++, python3-dev and python3-setuptools). A .pt2 is
# native code for the machine that builds the image.
FROM build-cpu AS pt2-cpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-torch python3-numpy python3-setuptools python3-dev \
 && rm -rf /var/lib/apt/lists/*
COPY models/ models/
RUN python3 models/export_pt2.py --out /src/pt2/fashion_mnist_pt2

# -------------------------------------------------------------- CPU runtime
# Runtime libraries only: no compiler, no headers. libtorch2.6 is the
# package with Debian's libtorch.so.2.6 (it pulls in OpenCV and more).
FROM ${CPU_BASE} AS runtime-cpu
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends libtorch2.6 libmicrohttpd12t64 libcjson1 libturbojpeg0 zlib1g \
      libpng16-16t64 libprotobuf-c1 \
 && (apt-get install -y --no-install-recommends libgrpc29t64 || apt-get install -y --no-install-recommends libgrpc29) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build-cpu /src/build/inferd /src/build/inferd-probe /usr/local/bin/
COPY --from=pt2-cpu /src/pt2/ /models/
RUN if ldd /usr/local/bin/inferd | grep 'not found'; then echo "inferd: missing libraries" >&2; exit 1; fi
# The .pt2 package is the default model here; TorchScript stays beside it.
ENV INFERD_DEVICES=cpu \
    INFERD_DEFAULT_MODEL=fashion_mnist_pt2

# ------------------------------------------------------------------- final
FROM runtime-${VARIANT}
ARG UID=10001
RUN groupadd --gid "$UID" inferd \
 && useradd --uid "$UID" --gid inferd --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin inferd
# Root-owned and read-only for the daemon; replace with a volume on /models.
COPY models/ /models/
# OMP_WAIT_POLICY=PASSIVE is what inferd sets for itself (by re-executing
# once when unset): setting it here spares that second libtorch load.
ENV INFERD_MODEL_REPOSITORY=/models \
    OMP_WAIT_POLICY=PASSIVE \
    INFERD_HOST=0.0.0.0 \
    INFERD_PORT=8080 \
    INFERD_GRPC_PORT=8001 \
    INFERD_LOG_FORMAT=json
USER ${UID}:${UID}
WORKDIR /tmp
EXPOSE 8080 8001
# inferd drains on SIGTERM (readiness 503, finish accepted requests, exit 0
# within --drain-timeout-s): give it more than that before SIGKILL.
STOPSIGNAL SIGTERM
# inferd-probe asks /v2/health/ready like `inferd --health-check`, without
# loading libtorch (which costs about a CPU-second per probe).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["inferd-probe"]
ENTRYPOINT ["inferd"]
