// torch_shim.cpp - the libtorch side of torch_shim.h. Every entry point
// catches std::exception and (...) so that no exception reaches C callers.
// CUDA code (streams, device guard, memory fraction) is compiled in only when
// SHIM_WITH_CUDA is defined by the Makefile (libtorch_cuda.so was found).
#include "torch_shim.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/script.h>
#include <torch/version.h>

#include "shim_runtime.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifdef SHIM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/cuda.h>
#endif

#ifdef SHIM_WITH_CUDA
// One captured graph: the static inputs it reads, the outputs it writes.
struct shim_graph {
    int64_t batch = 0;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    std::vector<torch::Tensor> inputs;
    shim_runtime_outputs outputs;
};
#endif

struct shim_model {
    const shim_runtime *runtime = nullptr;
    void *handle = nullptr;
    shim_load_options opt{};
    torch::Device device{torch::kCPU};
    // Per input normalised on the device: mean and std shaped to broadcast
    // along its channel dimension, on the device (undefined when off).
    std::vector<torch::Tensor> norm_mean, norm_std;
#ifdef SHIM_WITH_CUDA
    c10::optional<c10::cuda::CUDAStream> stream;
    std::vector<shim_graph> graphs; // ascending batch sizes
    uint64_t weight_bytes = 0;      // allocated over the load
    uint64_t graph_bytes = 0;       // allocated over the graph captures
    bool memory_known = false;      // the load's window could be read
#endif
    ~shim_model()
    {
#ifdef SHIM_WITH_CUDA
        graphs.clear(); // before the module whose memory they replay into
#endif
        if (runtime != nullptr && handle != nullptr)
            runtime->release(handle);
    }
};

struct shim_outputs {
    std::vector<torch::Tensor> tensors;
    std::vector<std::string> names;
};

// The model formats this build serves; a new format is one line here.
static const shim_runtime *const kRuntimes[] = {
    &shim_runtime_torchscript,
#ifdef SHIM_WITH_AOTI
    &shim_runtime_aoti,
#endif
};

static void set_error(char *err, size_t err_len, const char *what)
{
    if (err == nullptr || err_len == 0)
        return;
    // Keep one line: libtorch messages carry long backtraces. An error raised
    // inside TorchScript opens with a generic line and the interpreter's
    // traceback, and ends with the cause: keep the cause.
    static const char kInterp[] = "The following operation failed in the TorchScript interpreter";
    const char *line = what;
    if (strncmp(what, kInterp, sizeof kInterp - 1) == 0) {
        const char *end = what + strlen(what);
        while (end > what && (end[-1] == '\n' || end[-1] == ' '))
            end--;
        const char *start = end;
        while (start > what && start[-1] != '\n')
            start--;
        if (start < end)
            line = start;
    }
    size_t n = strcspn(line, "\n");
    if (n >= err_len)
        n = err_len - 1;
    memcpy(err, line, n);
    err[n] = '\0';
}

// libtorch's type for each shim_dtype, from shim_dtype_list.h.
#define SHIM_SCALAR(name, ctype, suffix) torch::k##suffix,
static const c10::ScalarType kScalarTypes[SHIM_DTYPE_COUNT] = {SHIM_DTYPE_LIST(SHIM_SCALAR)};
#undef SHIM_SCALAR

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
#define SHIM_SIZE(name, ctype, suffix) sizeof(ctype),
    static const size_t sizes[SHIM_DTYPE_COUNT] = {SHIM_DTYPE_LIST(SHIM_SIZE)};
#undef SHIM_SIZE
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

#ifdef SHIM_WITH_CUDA
/* Run fn with device current, restoring the caller's. Returns 0 or
 * SHIM_ERR_DEVICE with err set from the CUDA error. */
template <typename Fn>
static int on_device(int device, char *err, size_t err_len, const char *what, Fn fn)
{
    int previous = 0;
    cudaError_t rc = cudaGetDevice(&previous);
    if (rc == cudaSuccess)
        rc = cudaSetDevice(device);
    if (rc == cudaSuccess) {
        rc = fn();
        cudaSetDevice(previous);
    }
    if (rc != cudaSuccess) {
        char text[256];
        std::snprintf(text, sizeof text, "%s on CUDA device %d: %s", what, device,
                      cudaGetErrorString(rc));
        set_error(err, err_len, text);
        return SHIM_ERR_DEVICE;
    }
    return SHIM_OK;
}
#endif

extern "C" int shim_cuda_ipc_open(const void *handle, size_t handle_len, int device, void **dev_ptr,
                                  char *err, size_t err_len)
{
#ifdef SHIM_WITH_CUDA
    cudaIpcMemHandle_t h;
    if (handle == nullptr || handle_len != sizeof h || dev_ptr == nullptr) {
        set_error(err, err_len, "a CUDA IPC handle is 64 bytes");
        return SHIM_ERR_ARG;
    }
    std::memcpy(&h, handle, sizeof h);
    *dev_ptr = nullptr;
    return on_device(device, err, err_len, "cudaIpcOpenMemHandle", [&] {
        return cudaIpcOpenMemHandle(dev_ptr, h, cudaIpcMemLazyEnablePeerAccess);
    });
#else
    (void)handle, (void)handle_len, (void)device, (void)dev_ptr;
    set_error(err, err_len, "CUDA is not available in this build");
    return SHIM_ERR_DEVICE;
#endif
}

extern "C" void shim_cuda_ipc_close(void *dev_ptr, int device)
{
#ifdef SHIM_WITH_CUDA
    char ignored[8];
    on_device(device, ignored, sizeof ignored, "cudaIpcCloseMemHandle",
              [&] { return cudaIpcCloseMemHandle(dev_ptr); });
#else
    (void)dev_ptr, (void)device;
#endif
}

extern "C" int shim_cuda_copy_to_host(void *dst, const void *dev_src, size_t n, int device,
                                      char *err, size_t err_len)
{
#ifdef SHIM_WITH_CUDA
    return on_device(device, err, err_len, "cudaMemcpy (device to host)",
                     [&] { return cudaMemcpy(dst, dev_src, n, cudaMemcpyDeviceToHost); });
#else
    (void)dst, (void)dev_src, (void)n, (void)device;
    set_error(err, err_len, "CUDA is not available in this build");
    return SHIM_ERR_DEVICE;
#endif
}

extern "C" int shim_cuda_copy_to_device(void *dev_dst, const void *src, size_t n, int device,
                                        char *err, size_t err_len)
{
#ifdef SHIM_WITH_CUDA
    return on_device(device, err, err_len, "cudaMemcpy (host to device)",
                     [&] { return cudaMemcpy(dev_dst, src, n, cudaMemcpyHostToDevice); });
#else
    (void)dev_dst, (void)src, (void)n, (void)device;
    set_error(err, err_len, "CUDA is not available in this build");
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
        // The caching allocator starts lazily, with the first tensor on a
        // GPU: make one so that there is an allocator to cap.
        torch::empty({1}, torch::TensorOptions().device(torch::kCUDA, device));
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

// The format for path: opt_format by name when given, else by extension,
// else TorchScript (the format inferd has always served). NULL with err set
// when the format is not in this build.
static const shim_runtime *find_runtime(const char *path, const char *opt_format, char *err,
                                        size_t err_len)
{
    size_t n = strlen(path);
    const char *dot = strrchr(path, '.');
    for (const shim_runtime *rt : kRuntimes) {
        size_t e = strlen(rt->extension);
        if (opt_format != nullptr ? strcmp(opt_format, rt->format) == 0
                                  : n >= e && strcmp(path + n - e, rt->extension) == 0)
            return rt;
    }
    bool aoti = opt_format != nullptr ? strcmp(opt_format, "aoti") == 0
                                      : dot != nullptr && strcmp(dot, ".pt2") == 0;
    if (aoti) {
        std::string msg = std::string("AOTInductor .pt2 packages need libtorch 2.6 or newer "
                                      "built with AOTInductor; this inferd has libtorch ") +
                          TORCH_VERSION;
        set_error(err, err_len, msg.c_str());
        return nullptr;
    }
    if (opt_format != nullptr) {
        std::string msg = std::string("model format \"") + opt_format + "\" is not in this build";
        set_error(err, err_len, msg.c_str());
        return nullptr;
    }
    return &shim_runtime_torchscript;
}

extern "C" int shim_format_of(const char *path, const char **format, const char **platform,
                              char *err, size_t err_len)
{
    if (path == nullptr || format == nullptr || platform == nullptr) {
        set_error(err, err_len, "no model path given");
        return SHIM_ERR_ARG;
    }
    const shim_runtime *rt = find_runtime(path, nullptr, err, err_len);
    if (rt == nullptr)
        return SHIM_ERR_LOAD;
    *format = rt->format;
    *platform = rt->platform;
    return SHIM_OK;
}

#ifdef SHIM_WITH_CUDA
// One lock per CUDA device for the memory measuring windows (a load, a
// capture, a measured forward), so that two instances on one device do not
// count each other's allocations. Process-wide by nature: it guards the
// device's allocator statistics, which are process-wide. Lock order: the
// capture lock (shim_model_capture_graphs) before this one.
static std::mutex &memory_lock(int device)
{
    static std::mutex locks[64];
    return locks[static_cast<unsigned>(device) % 64];
}

// The bytes the caching allocator has handed out on device (all streams
// and pools of this process), after the device's queued work has finished.
// The allocator starts lazily, with the first tensor on the device: one is
// made (and freed) first so that there are statistics to read. Returns
// false, *out untouched, when they cannot be read.
static bool allocated_now(int device, uint64_t *out)
{
    try {
        (void)torch::empty({1}, torch::TensorOptions().device(torch::kCUDA, device));
        c10::cuda::device_synchronize();
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
        *out = static_cast<uint64_t>(stats.allocated_bytes[0].current); // [0]: all pools
        return true;
    } catch (...) {
        return false;
    }
}

static uint64_t growth(uint64_t before, uint64_t after)
{
    return after > before ? after - before : 0;
}

// Process-wide cuDNN/cuBLAS settings for GPU instances: fp32 means IEEE fp32
// (TF32 tensor cores would change results in the fourth digit), and cuDNN's
// benchmark mode once any model asks for it.
static void configure_cuda(const shim_load_options &opt)
{
    at::globalContext().setAllowTF32CuDNN(false);
    at::globalContext().setAllowTF32CuBLAS(false);
    if (opt.cudnn_benchmark)
        at::globalContext().setBenchmarkCuDNN(true);
}
#endif

// Whether every enabled normalisation names a floating dtype, a channel
// dimension and count it can broadcast along, and finite means and nonzero
// stds.
static bool normalize_options_valid(const shim_load_options &opt)
{
    for (const shim_normalize &n : opt.normalize) {
        if (!n.enabled)
            continue;
        if ((n.dtype != SHIM_FP32 && n.dtype != SHIM_FP16 && n.dtype != SHIM_FP64) ||
            (n.channel_dim != -1 && n.channel_dim != -3) || n.channels < 1 || n.channels > 3 ||
            !std::isfinite(n.scale))
            return false;
        for (int c = 0; c < n.channels; c++)
            if (!std::isfinite(n.mean[c]) || !std::isfinite(n.std[c]) || n.std[c] == 0.0)
                return false;
    }
    return true;
}

// The mean and std of each normalised input as tensors on the model's
// device, in the type the arithmetic runs in ([C, 1, 1] for NCHW, [C] for
// NHWC, so that they broadcast along the channel dimension).
static void make_normalize_tensors(shim_model &model)
{
    model.norm_mean.assign(SHIM_MAX_INPUTS, torch::Tensor());
    model.norm_std.assign(SHIM_MAX_INPUTS, torch::Tensor());
    for (int i = 0; i < SHIM_MAX_INPUTS; i++) {
        const shim_normalize &n = model.opt.normalize[i];
        if (!n.enabled)
            continue;
        std::vector<int64_t> shape{n.channels};
        if (n.channel_dim == -3)
            shape = {n.channels, 1, 1};
        auto type = n.dtype == SHIM_FP64 ? torch::kDouble : torch::kFloat;
        auto options = torch::TensorOptions().dtype(torch::kDouble);
        auto mean = torch::from_blob(const_cast<double *>(n.mean), {n.channels}, options);
        auto std = torch::from_blob(const_cast<double *>(n.std), {n.channels}, options);
        model.norm_mean[i] = mean.to(type).reshape(shape).to(model.device);
        model.norm_std[i] = std.to(type).reshape(shape).to(model.device);
    }
}

extern "C" int shim_model_load(const char *path, const struct shim_load_options *opt,
                               shim_model **out, char *err, size_t err_len)
{
    *out = nullptr;
    if (path == nullptr || opt == nullptr) {
        set_error(err, err_len, "no model path given");
        return SHIM_ERR_ARG;
    }
    if (opt->n_cuda_graphs < 0 || opt->n_cuda_graphs > SHIM_MAX_GRAPHS ||
        (opt->precision != SHIM_PRECISION_FP32 && opt->precision != SHIM_PRECISION_FP16)) {
        set_error(err, err_len, "invalid load options");
        return SHIM_ERR_ARG;
    }
    for (int k = 0; k < opt->n_cuda_graphs; k++) {
        if (opt->cuda_graphs[k] < 1 || (k > 0 && opt->cuda_graphs[k] <= opt->cuda_graphs[k - 1])) {
            set_error(err, err_len, "CUDA graph batch sizes must be positive and ascending");
            return SHIM_ERR_ARG;
        }
    }
    if (!normalize_options_valid(*opt)) {
        set_error(err, err_len, "invalid normalisation options");
        return SHIM_ERR_ARG;
    }
    const shim_runtime *rt = find_runtime(path, opt->format, err, err_len);
    if (rt == nullptr)
        return SHIM_ERR_LOAD;
#ifndef SHIM_WITH_CUDA
    if (opt->device != SHIM_DEVICE_CPU) {
        set_error(err, err_len, "this build of inferd has no CUDA support");
        return SHIM_ERR_DEVICE;
    }
#endif
    try {
        auto model = std::make_unique<shim_model>();
        model->runtime = rt;
        model->opt = *opt;
        if (opt->device != SHIM_DEVICE_CPU) {
            model->device = torch::Device(torch::kCUDA, opt->device);
#ifdef SHIM_WITH_CUDA
            configure_cuda(*opt);
            model->stream = c10::cuda::getStreamFromPool(false, opt->device);
#endif
        }
#ifdef SHIM_WITH_CUDA
        if (opt->device != SHIM_DEVICE_CPU) {
            std::lock_guard<std::mutex> lock(memory_lock(opt->device));
            c10::cuda::CUDAGuard device_guard(model->device.index());
            uint64_t before = 0, after = 0;
            bool known = allocated_now(opt->device, &before);
            model->handle = rt->load(path, *opt, model->device);
            make_normalize_tensors(*model);
            model->memory_known = known && allocated_now(opt->device, &after);
            model->weight_bytes = growth(before, after);
        }
#endif
        if (model->handle == nullptr) {
            model->handle = rt->load(path, *opt, model->device);
            make_normalize_tensors(*model);
        }
        *out = model.release();
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error loading the model");
    }
    return SHIM_ERR_LOAD;
}

extern "C" int shim_model_describe(const shim_model *model, struct shim_model_info *info)
{
    if (info == nullptr)
        return SHIM_ERR_ARG;
    *info = shim_model_info{};
    if (model == nullptr)
        return SHIM_ERR_ARG;
    info->format = model->runtime->format;
    info->platform = model->runtime->platform;
    try {
        if (model->runtime->describe != nullptr)
            model->runtime->describe(model->handle, *info);
    } catch (...) {
        const char *format = info->format, *platform = info->platform;
        *info = shim_model_info{};
        info->format = format;
        info->platform = platform;
    }
    return SHIM_OK;
}

extern "C" void shim_model_free(shim_model *model)
{
    try {
        delete model;
    } catch (...) {
    }
}

// The element type a tensor of dtype has on the model's device.
static c10::ScalarType device_dtype(const shim_model *model, enum shim_dtype dtype)
{
    c10::ScalarType t = kScalarTypes[dtype];
    if (model->opt.precision == SHIM_PRECISION_FP16 && c10::isFloatingType(t))
        return torch::kHalf;
    return t;
}

static torch::Tensor host_blob(const struct shim_tensor &t)
{
    std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
    // from_blob borrows the caller's memory (pinned staging on a GPU).
    return torch::from_blob(const_cast<void *>(t.data), shape,
                            torch::TensorOptions().dtype(kScalarTypes[t.dtype]));
}

// Input i's UINT8 pixels x (on the device) as the model's values:
// (x * scale - mean) / std per channel, in float32 (float64 for an FP64
// model). Throws std::invalid_argument when x is not pixels of that shape.
static torch::Tensor normalize_on_device(const shim_model *model, int i, const torch::Tensor &x)
{
    const shim_normalize &n = model->opt.normalize[i];
    if (x.scalar_type() != torch::kByte)
        throw std::invalid_argument("input " + std::to_string(i) +
                                    " is normalised on the device and must be UINT8 pixels");
    if (x.dim() < -n.channel_dim || x.size(x.dim() + n.channel_dim) != n.channels)
        throw std::invalid_argument("input " + std::to_string(i) + " must have " +
                                    std::to_string(n.channels) + " channels in dimension " +
                                    std::to_string(n.channel_dim));
    auto type = n.dtype == SHIM_FP64 ? torch::kDouble : torch::kFloat;
    return x.to(type).mul_(n.scale).sub_(model->norm_mean[i]).div_(model->norm_std[i]);
}

// Input i, already on the model's device, in the form the model takes:
// normalised when asked, in the model's precision and memory format.
static torch::Tensor device_form(const shim_model *model, int i, torch::Tensor x)
{
    if (i < SHIM_MAX_INPUTS && model->opt.normalize[i].enabled)
        x = normalize_on_device(model, i, x);
    enum shim_dtype dtype = SHIM_FP32;
    if (dtype_from_scalar(x.scalar_type(), &dtype) != 0)
        throw std::invalid_argument("input has a type the shim does not know");
    x = x.to(device_dtype(model, dtype));
    if (model->opt.channels_last && x.dim() == 4)
        x = x.contiguous(at::MemoryFormat::ChannelsLast);
    return x;
}

// Input i on the model's device, in its precision and memory format. On a
// GPU the copy is asynchronous on the instance's stream, and it copies the
// bytes as they come (UINT8 pixels: a quarter of FP32's).
static torch::Tensor to_device(const shim_model *model, int i, const struct shim_tensor &t)
{
    torch::Tensor x = host_blob(t);
    if (!model->device.is_cpu())
        x = x.to(model->device, /*non_blocking=*/true);
    return device_form(model, i, x);
}

// Bring outputs to the CPU (the first rows only, when rows >= 0), half back
// to FP32 under fp16 precision.
static void finish_outputs(const shim_model *model, const shim_runtime_outputs &raw,
                           shim_outputs *out, int64_t rows)
{
    for (size_t i = 0; i < raw.tensors.size(); i++) {
        torch::Tensor t = raw.tensors[i];
        if (rows >= 0)
            t = t.narrow(0, 0, rows);
        if (model->opt.precision == SHIM_PRECISION_FP16 && t.scalar_type() == torch::kHalf)
            t = t.to(torch::kFloat);
        out->tensors.push_back(t.to(torch::kCPU).contiguous());
        out->names.push_back(raw.names[i]);
    }
}

#ifdef SHIM_WITH_CUDA
// Replay the smallest captured graph that holds this batch. Returns false
// (nothing done) when no graph fits the inputs' count, shapes or types.
static bool replay_graph(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                         shim_outputs *out)
{
    if (n_inputs == 0 || n_inputs != (int)model->graphs[0].inputs.size() || inputs[0].ndim == 0)
        return false;
    int64_t rows = inputs[0].shape[0];
    shim_graph *g = nullptr;
    for (auto &candidate : model->graphs) {
        if (candidate.batch >= rows) {
            g = &candidate;
            break;
        }
    }
    if (g == nullptr)
        return false;
    for (int i = 0; i < n_inputs; i++) {
        const torch::Tensor &s = g->inputs[i];
        if (inputs[i].ndim != s.dim() || inputs[i].shape[0] != rows ||
            device_dtype(model, inputs[i].dtype) != s.scalar_type())
            return false;
        for (int d = 1; d < inputs[i].ndim; d++)
            if (inputs[i].shape[d] != s.size(d))
                return false;
    }
    for (int i = 0; i < n_inputs; i++)
        g->inputs[i].narrow(0, 0, rows).copy_(host_blob(inputs[i]), /*non_blocking=*/true);
    g->graph->replay();
    finish_outputs(model, g->outputs, out, rows);
    return true;
}
#endif

static int forward_into(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                        shim_outputs *out)
{
    c10::InferenceMode guard;
#ifdef SHIM_WITH_CUDA
    c10::optional<c10::cuda::CUDAStreamGuard> stream_guard;
    if (model->stream)
        stream_guard.emplace(*model->stream);
    if (!model->graphs.empty() && replay_graph(model, inputs, n_inputs, out))
        return SHIM_OK;
#endif
    std::vector<torch::Tensor> args;
    args.reserve(n_inputs);
    for (int i = 0; i < n_inputs; i++)
        args.push_back(to_device(model, i, inputs[i]));
    shim_runtime_outputs raw;
    model->runtime->forward(model->handle, args, raw);
    finish_outputs(model, raw, out, -1);
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
        size_t expect = 0;
        if (shim_shape_size(t.shape, t.ndim, shim_dtype_size(t.dtype), nullptr, &expect) != 0 ||
            expect != t.nbytes || (expect > 0 && t.data == nullptr)) {
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

#ifdef SHIM_WITH_CUDA
// Capture one graph for batch rows, inputs shaped like the template.
static shim_graph capture_one(shim_model *model, const struct shim_tensor *inputs, int n_inputs,
                              int64_t rows, at::cuda::MempoolId_t pool)
{
    shim_graph g;
    g.batch = rows;
    for (int i = 0; i < n_inputs; i++) {
        std::vector<int64_t> shape(inputs[i].shape, inputs[i].shape + inputs[i].ndim);
        if (shape.empty())
            throw std::runtime_error("CUDA graphs need inputs with a batch dimension");
        shape[0] = rows;
        auto t = torch::zeros(shape, torch::TensorOptions()
                                         .dtype(device_dtype(model, inputs[i].dtype))
                                         .device(model->device));
        if (model->opt.channels_last && t.dim() == 4)
            t = t.contiguous(at::MemoryFormat::ChannelsLast);
        g.inputs.push_back(t);
    }
    // The static inputs hold what the host copies in (UINT8 pixels for an
    // input normalised on the device): the graph converts them itself.
    auto graph_args = [&] {
        std::vector<torch::Tensor> args;
        for (int i = 0; i < n_inputs; i++)
            args.push_back(device_form(model, i, g.inputs[i]));
        return args;
    };
    // A few eager runs first: the TorchScript executor profiles and
    // optimises on its first calls, which must not happen inside a capture.
    for (int w = 0; w < 3; w++) {
        std::vector<torch::Tensor> args = graph_args();
        shim_runtime_outputs scratch;
        model->runtime->forward(model->handle, args, scratch);
    }
    model->stream->synchronize();
    g.graph = std::make_unique<at::cuda::CUDAGraph>();
#if TORCH_VERSION_MAJOR >= 2
    g.graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
#else
    g.graph->capture_begin(pool);
#endif
    try {
        std::vector<torch::Tensor> args = graph_args();
        model->runtime->forward(model->handle, args, g.outputs);
    } catch (...) {
        try {
            g.graph->capture_end();
        } catch (...) {
        }
        throw;
    }
    g.graph->capture_end();
    return g;
}
#endif

extern "C" int shim_model_capture_graphs(shim_model *model, const struct shim_tensor *inputs,
                                         int n_inputs, char *err, size_t err_len)
{
    if (model == nullptr || (n_inputs > 0 && inputs == nullptr)) {
        set_error(err, err_len, "capture called without a model or inputs");
        return SHIM_ERR_ARG;
    }
#ifdef SHIM_WITH_CUDA
    if (model->opt.n_cuda_graphs == 0 || !model->stream)
        return SHIM_OK;
    // Captures run one at a time in the process: a capture must not see
    // another thread's allocations or synchronisations.
    static std::mutex capture_lock;
    try {
        std::lock_guard<std::mutex> lock(capture_lock);
        std::lock_guard<std::mutex> memory(memory_lock(model->opt.device));
        c10::InferenceMode guard;
        c10::cuda::CUDAGuard device_guard(model->device.index());
        uint64_t before = 0, after = 0;
        bool known = allocated_now(model->opt.device, &before);
        c10::cuda::CUDAStreamGuard stream_guard(*model->stream);
        auto pool = at::cuda::graph_pool_handle();
        model->graphs.clear();
        // Largest first, so that the smaller graphs reuse the shared pool.
        for (int k = model->opt.n_cuda_graphs - 1; k >= 0; k--)
            model->graphs.insert(
                model->graphs.begin(),
                capture_one(model, inputs, n_inputs, model->opt.cuda_graphs[k], pool));
        model->stream->synchronize();
        known = known && allocated_now(model->opt.device, &after);
        model->graph_bytes = growth(before, after);
        model->memory_known = model->memory_known && known;
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error capturing CUDA graphs");
    }
    model->graphs.clear();
    return SHIM_ERR_FORWARD;
#else
    (void)n_inputs;
    return SHIM_OK;
#endif
}

extern "C" int shim_model_gpu_memory(shim_model *model, const struct shim_tensor *inputs,
                                     int n_inputs, uint64_t *bytes, char *err, size_t err_len)
{
    if (model == nullptr || bytes == nullptr || (n_inputs > 0 && inputs == nullptr)) {
        set_error(err, err_len, "memory measure called without a model or inputs");
        return SHIM_ERR_ARG;
    }
    *bytes = 0;
#ifdef SHIM_WITH_CUDA
    if (model->device.is_cpu()) {
        set_error(err, err_len, "a CPU instance has no GPU memory to measure");
        return SHIM_ERR_DEVICE;
    }
    int device = model->opt.device;
    try {
        std::lock_guard<std::mutex> lock(memory_lock(device));
        c10::cuda::CUDAGuard device_guard(model->device.index());
        uint64_t before = 0;
        if (!model->memory_known || !allocated_now(device, &before)) {
            set_error(err, err_len, "the CUDA caching allocator's statistics cannot be read");
            return SHIM_ERR_DEVICE;
        }
        c10::cuda::CUDACachingAllocator::resetPeakStats(device);
        {
            shim_outputs scratch;
            forward_into(model, inputs, n_inputs, &scratch);
            c10::cuda::device_synchronize();
        }
        auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
        uint64_t peak = static_cast<uint64_t>(stats.allocated_bytes[0].peak);
        *bytes = model->weight_bytes + model->graph_bytes + growth(before, peak);
        return SHIM_OK;
    } catch (const std::exception &e) {
        set_error(err, err_len, e.what());
    } catch (...) {
        set_error(err, err_len, "unknown error measuring GPU memory");
    }
    return SHIM_ERR_FORWARD;
#else
    (void)n_inputs;
    set_error(err, err_len, "this build of inferd has no CUDA support");
    return SHIM_ERR_DEVICE;
#endif
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
