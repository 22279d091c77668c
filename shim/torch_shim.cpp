// torch_shim.cpp - the libtorch side of torch_shim.h. Every entry point
// catches std::exception and (...) so that no exception reaches C callers.
// CUDA code (streams, device guard, memory fraction) is compiled in only when
// SHIM_WITH_CUDA is defined by the Makefile (libtorch_cuda.so was found).
#include "torch_shim.h"

#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/version.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#ifdef SHIM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#endif

struct shim_model {
    torch::jit::Module module;
    torch::Device device{torch::kCPU};
#ifdef SHIM_WITH_CUDA
    c10::optional<c10::cuda::CUDAStream> stream;
#endif
};

struct shim_outputs {
    std::vector<torch::Tensor> tensors;
    std::vector<std::string> names;
};

static void set_error(char *err, size_t err_len, const char *what)
{
    if (err == nullptr || err_len == 0)
        return;
    // Keep the first line only: libtorch messages carry long backtraces.
    size_t n = strcspn(what, "\n");
    if (n >= err_len)
        n = err_len - 1;
    memcpy(err, what, n);
    err[n] = '\0';
}

static const c10::ScalarType kScalarTypes[SHIM_DTYPE_COUNT] = {
    torch::kBool,  torch::kUInt8,   torch::kInt8,    torch::kInt16,   torch::kInt32,
    torch::kInt64, torch::kFloat16, torch::kFloat32, torch::kFloat64,
};

static int dtype_from_scalar(c10::ScalarType t, enum shim_dtype *out)
{
    for (int i = 0; i < SHIM_DTYPE_COUNT; i++) {
        if (kScalarTypes[i] == t) {
            *out = (enum shim_dtype)i;
            return 0;
        }
    }
    return -1;
}

extern "C" size_t shim_dtype_size(enum shim_dtype dtype)
{
    static const size_t sizes[SHIM_DTYPE_COUNT] = {1, 1, 1, 2, 4, 8, 2, 4, 8};
    if ((int)dtype < 0 || dtype >= SHIM_DTYPE_COUNT)
        return 0;
    return sizes[dtype];
}

extern "C" int shim_built_with_cuda(void)
{
#ifdef SHIM_WITH_CUDA
    return 1;
#else
    return 0;
#endif
}

extern "C" int shim_cuda_device_count(void)
{
#ifdef SHIM_WITH_CUDA
    try {
        return (int)torch::cuda::device_count();
    } catch (...) {
        return 0;
    }
#else
    return 0;
#endif
}

extern "C" const char *shim_torch_version(void)
{
    return TORCH_VERSION;
}

extern "C" int shim_host_alloc(size_t bytes, int device, void **out)
{
    *out = nullptr;
#ifdef SHIM_WITH_CUDA
    if (device != SHIM_DEVICE_CPU) {
        if (cudaMallocHost(out, bytes) != cudaSuccess) {
            *out = nullptr;
            return -1;
        }
        return 0;
    }
#endif
    (void)device;
    *out = malloc(bytes);
    return *out ? 0 : -1;
}

extern "C" void shim_host_free(void *ptr, int device)
{
    if (ptr == nullptr)
        return;
#ifdef SHIM_WITH_CUDA
    if (device != SHIM_DEVICE_CPU) {
        cudaFreeHost(ptr);
        return;
    }
#endif
    (void)device;
    free(ptr);
}

extern "C" int shim_cuda_memory_info(int device, uint64_t *free_bytes, uint64_t *total_bytes)
{
#ifdef SHIM_WITH_CUDA
    int previous = 0;
    size_t free_b = 0, total_b = 0;
    if (cudaGetDevice(&previous) != cudaSuccess || cudaSetDevice(device) != cudaSuccess)
        return SHIM_ERR_DEVICE;
    cudaError_t rc = cudaMemGetInfo(&free_b, &total_b);
    cudaSetDevice(previous);
    if (rc != cudaSuccess)
        return SHIM_ERR_DEVICE;
    *free_bytes = free_b;
    *total_bytes = total_b;
    return SHIM_OK;
#else
    (void)device;
    *free_bytes = *total_bytes = 0;
    return SHIM_ERR_DEVICE;
#endif
}

extern "C" int shim_cuda_pci_bus_id(int device, char *buf, size_t len)
{
#ifdef SHIM_WITH_CUDA
    if (buf == nullptr || len < 2 || len > INT32_MAX)
        return SHIM_ERR_ARG;
    if (cudaDeviceGetPCIBusId(buf, static_cast<int>(len), device) != cudaSuccess)
        return SHIM_ERR_DEVICE;
    buf[len - 1] = '\0';
    return SHIM_OK;
#else
    (void)device;
    if (buf != nullptr && len > 0)
        buf[0] = '\0';
    return SHIM_ERR_DEVICE;
#endif
}

extern "C" int shim_set_threads(int intra_op, int inter_op, char *err, size_t err_len)
{
    try {
        if (intra_op > 0)
            at::set_num_threads(intra_op);
        if (inter_op > 0)
            at::set_num_interop_threads(inter_op);
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error setting thread counts");
    }
    return SHIM_ERR_ARG;
}

extern "C" int shim_set_gpu_memory_fraction(int device, double fraction, char *err, size_t err_len)
{
    if (!(fraction > 0.0 && fraction <= 1.0)) {
        set_error(err, err_len, "GPU memory fraction must be in (0, 1]");
        return SHIM_ERR_ARG;
    }
#ifdef SHIM_WITH_CUDA
    try {
        c10::cuda::CUDACachingAllocator::setMemoryFraction(fraction, device);
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error setting GPU memory fraction");
    }
    return SHIM_ERR_DEVICE;
#else
    (void)device;
    set_error(err, err_len, "this build of inferd has no CUDA support");
    return SHIM_ERR_DEVICE;
#endif
}

extern "C" int shim_model_load(const char *path, int device, shim_model **out, char *err,
                               size_t err_len)
{
    *out = nullptr;
    if (path == nullptr) {
        set_error(err, err_len, "no model path given");
        return SHIM_ERR_ARG;
    }
#ifndef SHIM_WITH_CUDA
    if (device != SHIM_DEVICE_CPU) {
        set_error(err, err_len, "this build of inferd has no CUDA support");
        return SHIM_ERR_DEVICE;
    }
#endif
    try {
        auto *model = new shim_model();
        try {
            if (device != SHIM_DEVICE_CPU)
                model->device = torch::Device(torch::kCUDA, device);
            model->module = torch::jit::load(path, model->device);
            model->module.eval();
#ifdef SHIM_WITH_CUDA
            if (device != SHIM_DEVICE_CPU)
                model->stream = c10::cuda::getStreamFromPool(false, device);
#endif
        } catch (...) {
            delete model;
            throw;
        }
        *out = model;
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error loading the model");
    }
    return SHIM_ERR_LOAD;
}

extern "C" void shim_model_free(shim_model *model)
{
    try {
        delete model;
    } catch (...) {
    }
}

static torch::Tensor to_torch(const struct shim_tensor &t, torch::Device dev)
{
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    // from_blob borrows the caller's memory; on a GPU the (pinned) staging
    // buffer is copied to the device asynchronously on the instance's stream.
    auto blob = torch::from_blob(const_cast<void *>(t.data), shape,
                                 torch::TensorOptions().dtype(kScalarTypes[t.dtype]));
    if (dev.is_cpu())
        return blob;
    return blob.to(dev, /*non_blocking=*/true);
}

static void collect_outputs(const c10::IValue &value, shim_outputs *out, const std::string &name)
{
    if (value.isTensor()) {
        out->tensors.push_back(value.toTensor().to(torch::kCPU).contiguous());
        out->names.push_back(name);
    } else if (value.isTuple()) {
        for (const auto &el : value.toTupleRef().elements())
            collect_outputs(el, out, "");
    } else if (value.isList()) {
        for (const auto &el : value.toListRef())
            collect_outputs(el, out, "");
    } else if (value.isGenericDict()) {
        for (const auto &kv : value.toGenericDict()) {
            std::string key =
                kv.key().isString() ? kv.key().toStringRef() : kv.key().toIValue().tagKind();
            collect_outputs(kv.value(), out, key);
        }
    } else {
        throw std::runtime_error("model returned a " + value.tagKind() + ", expected tensors");
    }
}

static int forward_into(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                        shim_outputs *out)
{
    c10::InferenceMode guard;
#ifdef SHIM_WITH_CUDA
    c10::optional<c10::cuda::CUDAStreamGuard> stream_guard;
    if (model->stream)
        stream_guard.emplace(*model->stream);
#endif
    std::vector<c10::IValue> args;
    args.reserve(n_inputs);
    for (int i = 0; i < n_inputs; i++)
        args.emplace_back(to_torch(inputs[i], model->device));
    c10::IValue result = model->module.forward(args);
    collect_outputs(result, out, "");
#ifdef SHIM_WITH_CUDA
    if (model->stream)
        model->stream->synchronize();
#endif
    return SHIM_OK;
}

extern "C" int shim_model_forward(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                                  shim_outputs **out, char *err, size_t err_len)
{
    *out = nullptr;
    if (model == nullptr || (n_inputs > 0 && inputs == nullptr)) {
        set_error(err, err_len, "forward called without a model or inputs");
        return SHIM_ERR_ARG;
    }
    for (int i = 0; i < n_inputs; i++) {
        const struct shim_tensor &t = inputs[i];
        if ((int)t.dtype < 0 || t.dtype >= SHIM_DTYPE_COUNT || t.ndim < 0 ||
            t.ndim > SHIM_MAX_DIMS) {
            set_error(err, err_len, "input tensor has an invalid type or rank");
            return SHIM_ERR_ARG;
        }
        size_t expect = shim_dtype_size(t.dtype);
        for (int d = 0; d < t.ndim; d++)
            expect *= (size_t)t.shape[d];
        if (expect != t.nbytes) {
            set_error(err, err_len, "input tensor size does not match shape");
            return SHIM_ERR_ARG;
        }
    }
    shim_outputs *result = nullptr;
    try {
        result = new shim_outputs();
        forward_into(model, inputs, n_inputs, result);
        for (const auto &t : result->tensors) {
            enum shim_dtype dt;
            if (dtype_from_scalar(t.scalar_type(), &dt) != 0 || t.dim() > SHIM_MAX_DIMS) {
                delete result;
                set_error(err, err_len, "model output has an unsupported type or rank");
                return SHIM_ERR_OUTPUT;
            }
        }
        *out = result;
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error in forward");
    }
    delete result;
    return SHIM_ERR_FORWARD;
}

extern "C" int shim_outputs_count(const shim_outputs *outputs)
{
    return outputs ? (int)outputs->tensors.size() : 0;
}

extern "C" int shim_outputs_get(const shim_outputs *outputs, int i, struct shim_tensor *view)
{
    if (outputs == nullptr || i < 0 || i >= (int)outputs->tensors.size())
        return SHIM_ERR_ARG;
    const torch::Tensor &t = outputs->tensors[i];
    enum shim_dtype dt = SHIM_FP32;
    if (dtype_from_scalar(t.scalar_type(), &dt) != 0)
        return SHIM_ERR_OUTPUT;
    view->dtype = dt;
    view->ndim = (int)t.dim();
    for (int d = 0; d < view->ndim; d++)
        view->shape[d] = t.size(d);
    view->data = t.data_ptr();
    view->nbytes = t.numel() * t.element_size();
    return SHIM_OK;
}

extern "C" const char *shim_outputs_name(const shim_outputs *outputs, int i)
{
    if (outputs == nullptr || i < 0 || i >= (int)outputs->names.size())
        return "";
    return outputs->names[i].c_str();
}

extern "C" void shim_outputs_free(shim_outputs *outputs)
{
    try {
        delete outputs;
    } catch (...) {
    }
}
