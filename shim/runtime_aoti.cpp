// runtime_aoti.cpp - AOTInductor packages (.pt2, PyTorch 2's compiled
// format) behind the shim's model runtime interface (shim_runtime.h), through
// torch::inductor::AOTIModelPackageLoader (libtorch 2.6 and newer). Compiled
// only when the Makefile finds the loader's header (SHIM_WITH_AOTI).
//
// A package is native code generated for one device kind and fixed shapes
// (except the dimensions exported as dynamic), and it does not check what it
// is given. So this runtime checks: the package's device kind against the
// instance's at load, and the batch size against the range the package
// records (metadata "inferd.batch_min"/"inferd.batch_max", written by
// models/export_pt2.py) at every forward.
#include "shim_runtime.h"

#include <ATen/Parallel.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>

#ifdef SHIM_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace
{

using torch::inductor::AOTIModelPackageLoader;

struct aoti_model {
    std::unique_ptr<AOTIModelPackageLoader> loader;
    torch::Device device{torch::kCPU};
    int64_t batch_min = 0, batch_max = 0; // 0: the package does not say
};

// libtorch 2.6 takes (path[, model_name]) and loads a CUDA package on the
// current device; later versions add (run_single_threaded, num_runners,
// device_index). Pick whichever this libtorch's header declares.
template <typename L = AOTIModelPackageLoader>
std::unique_ptr<L> make_loader(const std::string &path, torch::Device device)
{
    if constexpr (std::is_constructible_v<L, const std::string &, const std::string &, bool, size_t,
                                          c10::DeviceIndex>) {
        c10::DeviceIndex index = device.is_cpu() ? -1 : device.index();
        return std::make_unique<L>(path, "model", false, 1, index);
    } else {
        (void)device;
        return std::make_unique<L>(path);
    }
}

// run(inputs, stream) where the loader takes a stream (2.6 and later), else
// run(inputs) (2.5's loader runs on the current stream).
template <typename L>
auto run_loader(L &loader, std::vector<torch::Tensor> &inputs, void *stream, int)
    -> decltype(loader.run(inputs, stream))
{
    return loader.run(inputs, stream);
}

template <typename L>
std::vector<at::Tensor> run_loader(L &loader, std::vector<torch::Tensor> &inputs, void *stream,
                                   long)
{
    (void)stream;
    return loader.run(inputs);
}

// The metadata value at key as a positive integer; 0 when absent.
int64_t metadata_int(const std::unordered_map<std::string, std::string> &meta, const char *key)
{
    auto it = meta.find(key);
    if (it == meta.end())
        return 0;
    errno = 0;
    char *end = nullptr;
    long long v = strtoll(it->second.c_str(), &end, 10);
    if (errno != 0 || end == it->second.c_str() || *end != '\0' || v < 1)
        throw std::runtime_error(std::string("package metadata ") + key +
                                 " is not a positive integer: \"" + it->second + "\"");
    return v;
}

std::string device_kind(torch::Device device)
{
    return device.is_cpu() ? "cpu" : "cuda";
}

// Rewrite libtorch's terse error for a package whose device kind this build
// has no runner for ("Unsupported device found: cuda").
[[noreturn]] void rethrow_load_error(const std::exception &e, torch::Device device)
{
    static const char kUnsupported[] = "Unsupported device found: ";
    std::string what = e.what();
    size_t at = what.find(kUnsupported);
    if (at != std::string::npos) {
        std::string kind = what.substr(at + sizeof kUnsupported - 1);
        kind = kind.substr(0, kind.find_first_of(" \n"));
        throw std::runtime_error("this .pt2 package was compiled for device \"" + kind +
                                 "\", which this build of inferd cannot run; the instance is on " +
                                 device_kind(device) + ": export the package for " +
                                 device_kind(device));
    }
    throw;
}

void *aoti_load(const char *path, const shim_load_options &opt, torch::Device device)
{
    if (opt.precision != SHIM_PRECISION_FP32)
        throw std::invalid_argument("precision fp16 does not apply to a .pt2 package (its code is "
                                    "compiled for its dtypes): export the package in half instead");
    if (opt.channels_last)
        throw std::invalid_argument("channels_last does not apply to a .pt2 package (its memory "
                                    "layout is compiled in)");
    if (opt.n_cuda_graphs > 0)
        throw std::invalid_argument("cuda_graphs is not supported for .pt2 packages");
    auto m = std::make_unique<aoti_model>();
    m->device = device;
    // Loaders are built one at a time in the process: libtorch 2.6's
    // constructor parses the package's JSON files into one function-static
    // object, so instances loading at once race on it. Seen with two threads
    // loading one package (bench/raw_shim, 40 runs): "No device information
    // found.", a JSON type error and a segmentation fault; none in 56 runs
    // with this lock.
    static std::mutex load_lock;
    std::lock_guard<std::mutex> lock(load_lock);
    try {
#ifdef SHIM_WITH_CUDA
        c10::optional<c10::cuda::CUDAGuard> guard;
        if (!device.is_cpu())
            guard.emplace(device.index());
#endif
        m->loader = make_loader(path, device);
    } catch (const std::exception &e) {
        rethrow_load_error(e, device);
    }
    auto meta = m->loader->get_metadata();
    auto key = meta.find("AOTI_DEVICE_KEY");
    std::string kind = key == meta.end() ? "" : key->second;
    if (kind != device_kind(device))
        throw std::runtime_error("this .pt2 package was compiled for device \"" + kind +
                                 "\"; the instance is on " + device_kind(device) +
                                 ": export the package for " + device_kind(device));
    m->batch_min = metadata_int(meta, "inferd.batch_min");
    m->batch_max = metadata_int(meta, "inferd.batch_max");
    if ((m->batch_min == 0) != (m->batch_max == 0) || m->batch_min > m->batch_max)
        throw std::runtime_error("package metadata inferd.batch_min/inferd.batch_max do not "
                                 "form a range");
    return m.release();
}

void aoti_forward(void *handle, std::vector<torch::Tensor> &inputs, shim_runtime_outputs &out)
{
    auto *m = static_cast<aoti_model *>(handle);
    // The package's OpenMP kernels size their teams from this thread's
    // OpenMP setting: give it libtorch's per-instance thread count, once.
    thread_local bool threads_set = false;
    if (!threads_set) {
        at::init_num_threads();
        threads_set = true;
    }
    if (m->batch_max > 0) {
        for (const auto &x : inputs) {
            int64_t rows = x.dim() > 0 ? x.size(0) : 0;
            if (rows < m->batch_min || rows > m->batch_max)
                throw std::invalid_argument(
                    "batch of " + std::to_string(rows) + " is outside the package's batch range " +
                    std::to_string(m->batch_min) + ".." + std::to_string(m->batch_max));
        }
    }
    void *stream = nullptr;
#ifdef SHIM_WITH_CUDA
    if (!m->device.is_cpu())
        stream = c10::cuda::getCurrentCUDAStream(m->device.index()).stream();
#endif
    std::vector<torch::Tensor> result = run_loader(*m->loader, inputs, stream, 0);
    for (auto &t : result) {
        out.tensors.push_back(std::move(t));
        out.names.emplace_back();
    }
}

void aoti_describe(void *handle, shim_model_info &info)
{
    auto *m = static_cast<aoti_model *>(handle);
    info.batch_min = m->batch_min;
    info.batch_max = m->batch_max;
}

void aoti_release(void *handle)
{
    delete static_cast<aoti_model *>(handle);
}

} // namespace

const shim_runtime shim_runtime_aoti = {
    "aoti", "torch_aoti", ".pt2", aoti_load, aoti_forward, aoti_describe, aoti_release,
};
