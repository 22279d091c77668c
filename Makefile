# inferd - build, run, test, bench. `make help` lists the targets.

CC       ?= cc
CXX      ?= g++
PYTHON   ?= /usr/bin/python3
BUILD    ?= build
PORT     ?= 8080
ARGS     ?=

# SANITIZE=1 builds everything with ASan + UBSan into build-asan/.
ifeq ($(SANITIZE),1)
BUILD    := build-asan
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif

WARN     := -Wall -Wextra -Werror
CUDA_HOME ?= /usr/local/cuda
CFLAGS   += -std=c11 -D_GNU_SOURCE -O2 -g $(WARN) $(SANFLAGS) -Iinclude -Ishim -MMD -MP
CXXFLAGS += -std=c++17 -O2 -g $(WARN) $(SANFLAGS) -Ishim -fPIC -MMD -MP

# ---- libtorch: TORCH_DIR, else python's torch with headers, else Debian's ----
ifndef TORCH_DIR
TORCH_DIR := $(shell for py in /usr/bin/python3 python3; do \
    d=$$($$py -c 'import torch,os;print(os.path.dirname(torch.__file__))' 2>/dev/null) && \
    [ -f "$$d/include/torch/script.h" ] && echo "$$d" && break; done)
endif
ifneq ($(TORCH_DIR),)
TORCH_INC := -isystem $(TORCH_DIR)/include -isystem $(TORCH_DIR)/include/torch/csrc/api/include
TORCH_LIBDIR := $(TORCH_DIR)/lib
TORCH_LDFLAGS := -L$(TORCH_LIBDIR) -Wl,-rpath,$(TORCH_LIBDIR)
else ifneq ($(wildcard /usr/include/torch/script.h),)
TORCH_INC := -isystem /usr/include/torch/csrc/api/include
TORCH_LIBDIR := $(firstword $(dir $(wildcard /usr/lib/*/libtorch.so)))
TORCH_LDFLAGS :=
endif
TORCH_LIBS := -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10

ifneq ($(wildcard $(TORCH_LIBDIR)/libtorch_cuda.so),)
CUDART_DIR := $(firstword $(wildcard $(TORCH_DIR)/../nvidia/cu13/lib $(TORCH_DIR)/../nvidia/cuda_runtime/lib) $(CUDA_HOME)/lib64)
CXXFLAGS += -DSHIM_WITH_CUDA -isystem $(CUDA_HOME)/include
TORCH_LIBS += -ltorch_cuda -lc10_cuda
TORCH_LDFLAGS += -L$(CUDART_DIR) -Wl,-rpath,$(CUDART_DIR) -l:$(notdir $(firstword $(wildcard $(CUDART_DIR)/libcudart.so*)))
WITH_CUDA := yes
else
WITH_CUDA := no
endif
TORCH_LIBS += -Wl,--as-needed
CXXFLAGS += $(TORCH_INC)

# AOTInductor packages (.pt2) when this libtorch has the package loader (2.6+).
AOTI_HEADER := torch/csrc/inductor/aoti_package/model_package_loader.h
ifneq ($(wildcard $(if $(TORCH_DIR),$(TORCH_DIR)/include,/usr/include)/$(AOTI_HEADER)),)
CXXFLAGS += -DSHIM_WITH_AOTI
WITH_AOTI := yes
else
WITH_AOTI := no
endif

LDLIBS := -lmicrohttpd -lcjson -lturbojpeg -lpng -lz -lpthread -lm -ldl

# WITH_GRPC=0 builds without the gRPC front end (a machine without
# libgrpc-dev and protobuf-c: tests/gpu/run.sh); --grpc-port is then ignored.
WITH_GRPC ?= 1
GRPC_SRC := src/grpc_front.c src/grpc_service.c src/grpc_shm.c src/grpc_reply.c src/v2_proto.c
ifeq ($(WITH_GRPC),1)
LDLIBS   += -lgrpc -lgpr -lprotobuf-c
else
CFLAGS   += -DINFERD_NO_GRPC
endif

# DEPS_ROOT=<dir>: libmicrohttpd and cJSON unpacked from .deb files under dir
# (a machine where they cannot be installed: tests/gpu/run.sh).
ifneq ($(DEPS_ROOT),)
DEPS_LIBDIR := $(DEPS_ROOT)/usr/lib/x86_64-linux-gnu
CFLAGS  += -I$(DEPS_ROOT)/usr/include
LDFLAGS += -L$(DEPS_LIBDIR) -Wl,-rpath,$(DEPS_LIBDIR)
endif

# gRPC messages: protobuf-c code generated from proto/ into $(BUILD)/gen.
GEN      := $(BUILD)/gen
PROTOS   := $(if $(filter 1,$(WITH_GRPC)),$(wildcard proto/*.proto))
PROTO_H  := $(PROTOS:proto/%.proto=$(GEN)/%.pb-c.h)
PROTO_OBJ := $(PROTOS:proto/%.proto=$(BUILD)/obj/%.pb-c.o)
CFLAGS   += -I$(GEN)

SRC      := $(filter-out $(if $(filter 1,$(WITH_GRPC)),,$(GRPC_SRC)),$(wildcard src/*.c))
OBJ      := $(SRC:src/%.c=$(BUILD)/obj/%.o) $(PROTO_OBJ)
SHIM_OBJ := $(BUILD)/obj/torch_shim.o $(BUILD)/obj/runtime_torchscript.o $(BUILD)/obj/numconv.o
ifeq ($(WITH_AOTI),yes)
SHIM_OBJ += $(BUILD)/obj/runtime_aoti.o
endif
# Modules the unit tests link (no libtorch, no HTTP).
CORE_OBJ := $(addprefix $(BUILD)/obj/,dtype.o shape.o tensor.o tensor_json.o json_numbers.o strbuf.o config.o router.o model_repo.o infer_request.o batcher.o metrics.o access.o log.o \
            image.o preprocess.o image_batch.o multipart.o base64.o topk.o encoding.o model_config_json.o batch.o v2_binding.o v2_json.o redact.o shm_region.o v2_shm.o \
            batch_profile.o) $(BUILD)/obj/numconv.o
IMAGE_LIBS := -lturbojpeg -lpng
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all help deps check-deps check-layers run model model-pt2 examples image-data resnet18 test test-unit test-integration \
        fuzz bench bench-codec bench-v2 bench-shm bench-grpc bench-image bench-callgrind format clean cuda-syntax
all: check-deps $(BUILD)/inferd $(BUILD)/inferd-probe

help:
	@echo "inferd make targets:"
	@echo "  make                 build $(BUILD)/inferd and $(BUILD)/inferd-probe (libtorch: $(or $(TORCH_DIR),Debian libtorch-dev), CUDA: $(WITH_CUDA), .pt2: $(WITH_AOTI))"
	@echo "  make deps            install the Debian packages needed to build, run and test"
	@echo "  make run             serve models/ (default model fashion_mnist) on PORT=$(PORT); ARGS= adds flags"
	@echo "  make model           retrain models/fashion_mnist/model.pt from Debian's Fashion-MNIST"
	@echo "  make model-pt2       export the default model as an AOTInductor package into PT2_OUT=$(PT2_OUT)/ (torch >= 2.6)"
	@echo "  make examples        regenerate models/examples/ request files"
	@echo "  make image-data      Fashion-MNIST PNGs, skimage photos and the colour model (build/image-data/)"
	@echo "  make resnet18        generate the ResNet-18 benchmark model (build/bench-models/, not committed)"
	@echo "  make test            unit + integration tests (what .ci/run runs)"
	@echo "  make test-unit       C unit tests (cmocka)"
	@echo "  make test-integration  pytest against the real daemon over HTTP"
	@echo "  make test SANITIZE=1 the same tests with ASan + UBSan (build-asan/)"
	@echo "  make cuda-syntax     compile the shim's CUDA code path (no GPU needed)"
	@echo "  make check-layers    fail when modules include each other in a cycle or against the layer order"
	@echo "  make fuzz            libFuzzer on the JSON codec, router, API key file, image decode+preprocess, multipart, model config, gzip/deflate inflater, log escaping, v2 decoder, v2 whole path, shared memory regions and offsets, gRPC ModelInfer decode (FUZZ_SECONDS=$(FUZZ_SECONDS); FUZZ_RUNS=N for long runs)"
	@echo "  make bench           throughput: inferd vs Flask+gunicorn vs raw libtorch (bench/)"
	@echo "  make bench-codec     JSON number decode/encode MB/s: inferd's codec vs cJSON"
	@echo "  make bench-v2        server CPU per request: v2 JSON vs v2 binary, 3x224x224 FP32"
	@echo "  make bench-shm       req/s and server CPU per request: HTTP binary vs system shared memory, 3x224x224 FP32, c=1 and 32"
	@echo "  make bench-image     image decode+preprocess: C vs PIL+torchvision; req/s posting a JPEG"
	@echo "  make bench-callgrind instructions per request (valgrind callgrind): /predict JSON, v2 binary"
	@echo "  make bench-grpc      gRPC ModelInfer vs HTTP v2 binary, same model and payload, c=1,8,32,128"
	@echo "  make format          clang-format every C/C++ file"
	@echo "  make clean           remove build outputs"
	@echo "Variables: TORCH_DIR=<libtorch or pip torch dir>  SANITIZE=1  WITH_GRPC=0 (gRPC: $(if $(filter 1,$(WITH_GRPC)),yes,no))  PORT=  ARGS="

# One clear line per missing dependency.
check-deps:
	@test -f $(DEPS_ROOT)/usr/include/microhttpd.h || { echo "missing libmicrohttpd: apt-get install libmicrohttpd-dev (or: make deps)"; exit 1; }
	@test -f $(DEPS_ROOT)/usr/include/cjson/cJSON.h || { echo "missing cJSON: apt-get install libcjson-dev (or: make deps)"; exit 1; }
	@test -f $(DEPS_ROOT)/usr/include/turbojpeg.h || test -f /usr/include/turbojpeg.h || { echo "missing TurboJPEG: apt-get install libturbojpeg0-dev (or: make deps)"; exit 1; }
	@test -f $(DEPS_ROOT)/usr/include/png.h || test -f /usr/include/png.h || { echo "missing libpng: apt-get install libpng-dev (or: make deps)"; exit 1; }
	@test -f $(DEPS_ROOT)/usr/include/zlib.h || test -f /usr/include/zlib.h || { echo "missing zlib: apt-get install zlib1g-dev (or: make deps)"; exit 1; }
ifeq ($(WITH_GRPC),1)
	@test -f /usr/include/grpc/grpc.h || { echo "missing gRPC: apt-get install libgrpc-dev (or: make deps; or build without gRPC: WITH_GRPC=0)"; exit 1; }
	@test -f /usr/include/protobuf-c/protobuf-c.h || { echo "missing protobuf-c: apt-get install libprotobuf-c-dev (or: make deps; or WITH_GRPC=0)"; exit 1; }
	@command -v protoc-c >/dev/null || { echo "missing protoc-c: apt-get install protobuf-c-compiler (or: make deps; or WITH_GRPC=0)"; exit 1; }
endif
	@test -n "$(TORCH_INC)" || { echo "missing libtorch: apt-get install libtorch-dev, or set TORCH_DIR= to a LibTorch/pip torch folder (or: make deps)"; exit 1; }

deps:
	scripts/install-deps.sh

$(BUILD)/inferd: $(OBJ) $(SHIM_OBJ)
	$(CXX) $(SANFLAGS) -o $@ $^ $(LDFLAGS) $(TORCH_LDFLAGS) $(TORCH_LIBS) $(LDLIBS)

# A readiness probe for container health checks that does not load libtorch.
$(BUILD)/inferd-probe: tools/inferd_probe.c $(BUILD)/obj/health_probe.o
	$(CC) $(CFLAGS) -o $@ $^

# The resampling loops need -O3's vectoriser (about 4x on the vertical pass).
$(BUILD)/obj/preprocess.o: CFLAGS += -O3

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj $(PROTO_H)
	$(CC) $(CFLAGS) -c $< -o $@

$(GEN)/%.pb-c.c $(GEN)/%.pb-c.h: proto/%.proto | $(GEN)
	protoc-c --c_out=$(GEN) -Iproto $<

$(BUILD)/obj/%.pb-c.o: $(GEN)/%.pb-c.c | $(BUILD)/obj
	$(CC) $(CFLAGS) -c $< -o $@

$(GEN):
	mkdir -p $@

# Generated sources stay (make would delete them as intermediates).
.SECONDARY: $(PROTO_H) $(PROTO_H:.h=.c)

$(BUILD)/obj/%.o: shim/%.cpp | $(BUILD)/obj
	$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/obj $(BUILD)/tests:
	mkdir -p $@

run: all
	$(BUILD)/inferd --port $(PORT) --model-repository models $(ARGS)

model:
	cd models && $(PYTHON) train_fashion_mnist.py

# Needs python torch >= 2.6 (Debian 13's; on Debian 12 run it in the root of
# scripts/trixie-root.sh). The package is native code for this machine: not committed.
PT2_OUT ?= models/fashion_mnist_pt2
model-pt2:
	$(PYTHON) models/export_pt2.py --out $(PT2_OUT)

examples:
	$(PYTHON) models/make_examples.py

# Test data for image requests: Fashion-MNIST PNGs, photos from Debian's
# python3-skimage, and the colour model (build/image-data/, not committed).
image-data:
	$(PYTHON) models/make_image_data.py

resnet18: build/bench-models/resnet18/model.pt
build/bench-models/resnet18/model.pt: models/make_resnet18.py
	$(PYTHON) models/make_resnet18.py

# ---- tests ----
$(BUILD)/tests/%: tests/unit/%.c $(CORE_OBJ) | $(BUILD)/tests
	$(CC) $(CFLAGS) -o $@ $< $(CORE_OBJ) -lcmocka -lcjson $(IMAGE_LIBS) -lz -lpthread -lm -lstdc++

# The GPU metrics test brings its own CUDA figures and a stand-in NVML library.
$(BUILD)/tests/libfake_nvml.so: tests/unit/fake_nvml.c | $(BUILD)/tests
	$(CC) $(CFLAGS) -fPIC -shared -o $@ $<

$(BUILD)/tests/test_gpu_stats: tests/unit/test_gpu_stats.c $(BUILD)/obj/gpu_stats.o \
		$(BUILD)/obj/strbuf.o $(BUILD)/tests/libfake_nvml.so | $(BUILD)/tests
	$(CC) $(CFLAGS) -DFAKE_NVML='"$(abspath $(BUILD)/tests/libfake_nvml.so)"' -o $@ $< \
		$(BUILD)/obj/gpu_stats.o $(BUILD)/obj/strbuf.o -lcmocka -ldl

# The batch stage's test brings its own host memory (the shim's, without libtorch).
$(BUILD)/tests/test_batch_stage: tests/unit/test_batch_stage.c $(CORE_OBJ) $(BUILD)/obj/batch_stage.o | $(BUILD)/tests
	$(CC) $(CFLAGS) -o $@ $< $(CORE_OBJ) $(BUILD)/obj/batch_stage.o -lcmocka -lcjson $(IMAGE_LIBS) -lz -lpthread -lm -lstdc++

test-unit: check-deps $(UNIT_BIN)
	@failed=0; for t in $(UNIT_BIN); do echo "== $$t"; $$t || failed=1; done; exit $$failed

test-integration: all
	INFERD_BIN=$(BUILD)/inferd TEST_READY_TIMEOUT_S=$(if $(SANITIZE),120,30) $(PYTHON) -m pytest -q --durations=20 tests/integration

test: test-unit test-integration

# Compile the shim's CUDA path against this libtorch's headers (syntax only:
# no GPU or CUDA libtorch needed). Debian's headers lack one generated file,
# which an empty stand-in replaces.
cuda-syntax:
	@test -d "$(CUDA_HOME)/include" || { echo "missing CUDA headers in $(CUDA_HOME)/include"; exit 1; }
	mkdir -p $(BUILD)/cuda-stub/c10/cuda/impl
	test -n "$$(find $(dir $(firstword $(wildcard $(TORCH_DIR)/include /usr/include)))/ -path '*c10/cuda/impl/cuda_cmake_macros.h' 2>/dev/null | head -1)" || \
	  echo '#pragma once' > $(BUILD)/cuda-stub/c10/cuda/impl/cuda_cmake_macros.h
	$(CXX) -std=c++17 -fsyntax-only $(WARN) -DSHIM_WITH_CUDA -Ishim -isystem $(BUILD)/cuda-stub \
	  $(TORCH_INC) -isystem $(CUDA_HOME)/include shim/torch_shim.cpp
ifeq ($(WITH_AOTI),yes)
	$(CXX) -std=c++17 -fsyntax-only $(WARN) -DSHIM_WITH_CUDA -DSHIM_WITH_AOTI -Ishim \
	  -isystem $(BUILD)/cuda-stub $(TORCH_INC) -isystem $(CUDA_HOME)/include shim/runtime_aoti.cpp
endif
	@echo "shim CUDA path compiles$(if $(filter yes,$(WITH_AOTI)), (with .pt2),)"

check-layers:
	scripts/check-layers.sh

FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench: all
	bench/run.sh

# JSON number codec speed, inferd's vs cJSON's (one core, no server).
$(BUILD)/bench/codec_speed: bench/codec_speed.c $(CORE_OBJ)
	mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CORE_OBJ) -lcjson $(IMAGE_LIBS) -lz -lm -lstdc++

# Raw forward throughput through the shim, no HTTP (the GPU benchmark's ceiling).
$(BUILD)/bench/raw_shim: bench/raw_shim.c $(SHIM_OBJ)
	mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c bench/raw_shim.c -o $(BUILD)/obj/raw_shim.o
	$(CXX) -o $@ $(BUILD)/obj/raw_shim.o $(SHIM_OBJ) $(LDFLAGS) $(TORCH_LDFLAGS) $(TORCH_LIBS) -lpthread

bench-codec: $(BUILD)/bench/codec_speed
	$(BUILD)/bench/codec_speed

# Image decode + preprocess per image on one core: inferd's C path vs PIL +
# torchvision, and end-to-end req/s posting a 224x224 JPEG.
$(BUILD)/bench/image_speed: bench/image_speed.c $(CORE_OBJ)
	mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CORE_OBJ) -lcjson $(IMAGE_LIBS) -lz -lm -lstdc++

bench-image: all $(BUILD)/bench/image_speed
	$(PYTHON) bench/image_speed.py

# The same 3x224x224 FP32 tensor in the body (v2 binary) vs in a system shared
# memory region: req/s and server CPU per request at c=1 and 32.
bench-shm: all
	$(PYTHON) bench/shm_payload.py

# Instructions per request (valgrind callgrind): /predict JSON and v2 binary.
bench-callgrind: all
	bench/callgrind.sh

# gRPC vs HTTP v2 binary, one fashion_mnist image, in one run.
bench-grpc: all $(BUILD)/bench/grpc_load
	$(PYTHON) bench/grpc_vs_http.py

# The gRPC load generator of bench-grpc (gRPC's C core; bench only).
$(BUILD)/bench/grpc_load: bench/grpc_load.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o $@ $< -lgrpc -lgpr

# v2 JSON vs v2 binary for one 3x224x224 FP32 request: server CPU per request.
bench-v2: all
	$(PYTHON) bench/v2_payload.py

format:
	clang-format -i src/*.c include/*.h shim/*.cpp shim/*.h tools/*.c tests/unit/*.c tests/unit/*.h tests/fuzz/*.c

clean:
	rm -rf build build-asan

-include $(OBJ:.o=.d) $(SHIM_OBJ:.o=.d)
