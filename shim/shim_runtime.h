// shim_runtime.h - the model runtime interface inside the shim: one
// implementation per model format (runtime_torchscript.cpp, ...), listed in
// the registry in torch_shim.cpp. C++, internal to shim/; C code sees only
// torch_shim.h.
//
// torch_shim.cpp does everything that does not depend on the format: device
// and stream, input copies, normalisation of UINT8 pixels on the device,
// precision and memory-format conversion of the inputs, CUDA graphs, the
// GPU memory measure, output collection, and catching every exception. A
// runtime only loads, describes, runs and frees. Any of its functions may
// throw; torch_shim.cpp turns the exception into an error message.
#ifndef INFERD_SHIM_RUNTIME_H
#define INFERD_SHIM_RUNTIME_H

#include <torch/script.h>

#include <string>
#include <vector>

#include "torch_shim.h"

struct shim_runtime_outputs {
    std::vector<torch::Tensor> tensors;
    std::vector<std::string> names; // "" for positional outputs
};

struct shim_runtime {
    const char *format;    // short name used in logs and errors
    const char *platform;  // KServe v2 metadata "platform"
    const char *extension; // file name suffix this format takes, e.g. ".pt"

    // Load path onto device with opt's precision and memory format (the
    // weights are converted here). Returns the runtime's own handle.
    void *(*load)(const char *path, const shim_load_options &opt, torch::Device device);
    // Run forward on inputs already on the device, in the precision and
    // memory format asked at load. Outputs may stay on the device.
    void (*forward)(void *handle, std::vector<torch::Tensor> &inputs, shim_runtime_outputs &out);
    // Fill what the model file says about itself (info comes zeroed, with
    // format and platform set); NULL when the format records nothing.
    void (*describe)(void *handle, shim_model_info &info);
    void (*release)(void *handle);
};

// The formats this build serves (torch_shim.cpp's registry uses these).
extern const shim_runtime shim_runtime_torchscript;
#ifdef SHIM_WITH_AOTI
extern const shim_runtime shim_runtime_aoti;
#endif

#endif
