// runtime_torchscript.cpp - TorchScript files (.pt) behind the shim's model
// runtime interface (shim_runtime.h): torch::jit::load, forward, free.
#include "shim_runtime.h"

#include <mutex>
#include <stdexcept>

// Declared in torch/csrc/jit/codegen/fuser/interface.h, which Debian's
// libtorch-dev does not install; exported by libtorch_cpu since 1.x.
namespace torch::jit
{
TORCH_API void overrideCanFuseOnCPU(bool value);
}

namespace
{

// TorchScript's CPU fuser (NNC, compiled with LLVM) is off in Debian's
// libtorch 1.13 and on in its 2.6, where it was seen to hang the second
// forward of a model with a loop (tanh(matmul) in models/make_slow_model.py)
// for minutes. Keep it off everywhere: the same executor on every libtorch.
void disable_cpu_fuser()
{
    static std::once_flag once;
    std::call_once(once, [] { torch::jit::overrideCanFuseOnCPU(false); });
}

struct torchscript_model {
    torch::jit::Module module;
};

void collect(const c10::IValue &value, shim_runtime_outputs &out, const std::string &name)
{
    if (value.isTensor()) {
        out.tensors.push_back(value.toTensor());
        out.names.push_back(name);
    } else if (value.isTuple()) {
        for (const auto &el : value.toTupleRef().elements())
            collect(el, out, "");
    } else if (value.isList()) {
        for (const auto &el : value.toListRef())
            collect(el, out, "");
    } else if (value.isGenericDict()) {
        for (const auto &kv : value.toGenericDict()) {
            std::string key =
                kv.key().isString() ? kv.key().toStringRef() : kv.key().toIValue().tagKind();
            collect(kv.value(), out, key);
        }
    } else {
        throw std::runtime_error("model returned a " + value.tagKind() + ", expected tensors");
    }
}

void *ts_load(const char *path, const shim_load_options &opt, torch::Device device)
{
    disable_cpu_fuser();
    auto *m = new torchscript_model();
    try {
        m->module = torch::jit::load(path, device);
        m->module.eval();
        torch::NoGradGuard no_grad;
        if (opt.precision == SHIM_PRECISION_FP16)
            m->module.to(torch::kHalf);
        if (opt.channels_last) {
            for (auto p : m->module.parameters())
                if (p.dim() == 4)
                    p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
        }
    } catch (...) {
        delete m;
        throw;
    }
    return m;
}

void ts_forward(void *handle, std::vector<torch::Tensor> &inputs, shim_runtime_outputs &out)
{
    auto *m = static_cast<torchscript_model *>(handle);
    std::vector<c10::IValue> args(inputs.begin(), inputs.end());
    collect(m->module.forward(args), out, "");
}

void ts_release(void *handle)
{
    delete static_cast<torchscript_model *>(handle);
}

} // namespace

const shim_runtime shim_runtime_torchscript = {
    "torchscript", "pytorch_torchscript", ".pt", ts_load, ts_forward, nullptr, ts_release,
};
