// TensorRT IPluginV3 plugins for art::QRAttention and art::TrackletLink (namespace "art", version "1"),
// thin wrappers over the C ABI of plugins/csrc/art_ops.h. Written against the TensorRT 10/11 C++ API
// (NvInferRuntime.h: IPluginV3OneCore / IPluginV3OneBuild / IPluginV3OneRuntime, IPluginCreatorV3One).
// CI compiles it with -Wall -Wextra -Werror against NVIDIA's published headers of TensorRT 10.3,
// 10.13 and 11.1, and drives it through its lifecycle (plugins/tests/trt_plugin_harness.cpp), with
// the kernels executed on the CPU; docs/development.md says what still needs TensorRT itself.
//
// The ONNX parser creates the plugins from the node attributes: QRAttention {num_heads, scale},
// TrackletLink {temperature, eps}, with every other attribute of the node beside them. A library
// loaded with IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, trt.get_plugin_registry().
// load_library) must export `getCreators` and `setLoggerFinder`.
#include <NvInferRuntime.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "art_ops.h"

namespace art_trt {

using namespace nvinfer1;

constexpr char const* kNamespace = "art";
constexpr char const* kVersion = "1";

ILoggerFinder* gLoggerFinder = nullptr;  // set by TensorRT through setLoggerFinder

// Errors go to the logger of the engine or builder that called us, when TensorRT gave us one.
void logError(char const* message) {
    ILogger* logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    if (logger != nullptr) logger->log(ILogger::Severity::kERROR, message);
}

// Attribute values arrive as the type the parser chose (ONNX INT → int32 or int64, FLOAT → float32).
bool readInt(PluginField const& f, int32_t& out) {
    if (f.data == nullptr || f.length < 1) return false;
    switch (f.type) {
        case PluginFieldType::kINT32: out = *static_cast<int32_t const*>(f.data); return true;
        case PluginFieldType::kINT64: out = static_cast<int32_t>(*static_cast<int64_t const*>(f.data)); return true;
        case PluginFieldType::kINT16: out = *static_cast<int16_t const*>(f.data); return true;
        case PluginFieldType::kINT8: out = *static_cast<int8_t const*>(f.data); return true;
        default: return false;
    }
}

bool readFloat(PluginField const& f, float& out) {
    if (f.data == nullptr || f.length < 1) return false;
    switch (f.type) {
        case PluginFieldType::kFLOAT32: out = *static_cast<float const*>(f.data); return true;
        case PluginFieldType::kFLOAT64: out = static_cast<float>(*static_cast<double const*>(f.data)); return true;
        default: return false;
    }
}

art_dtype toArt(DataType t) { return t == DataType::kHALF ? ART_FLOAT16 : ART_FLOAT32; }

// Linear float or half tensors, every input and output of the same type as input 0.
bool floatOrHalfLikeFirst(int32_t pos, DynamicPluginTensorDesc const* inOut) {
    auto const& desc = inOut[pos].desc;
    bool const typeOk = desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    return desc.format == TensorFormat::kLINEAR && typeOk && (pos == 0 || desc.type == inOut[0].desc.type);
}

// The shared plumbing of both plugins: the capability interfaces and two serialized fields.
template <typename Derived>
class PluginBase : public IPluginV3, public IPluginV3OneCore, public IPluginV3OneBuild, public IPluginV3OneRuntime {
public:
    IPluginCapability* getCapabilityInterface(PluginCapabilityType type) noexcept override {
        switch (type) {
            case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
            case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
            case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
        }
        return nullptr;
    }

    IPluginV3* clone() noexcept override {
        try {
            return new Derived(static_cast<Derived const&>(*this));
        } catch (...) {
            return nullptr;
        }
    }

    char const* getPluginName() const noexcept override { return Derived::kName; }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }

    int32_t configurePlugin(DynamicPluginTensorDesc const*, int32_t, DynamicPluginTensorDesc const*,
                            int32_t) noexcept override {
        return 0;
    }

    int32_t getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override {
        if (nbInputs < 1) return -1;
        for (int32_t i = 0; i < nbOutputs; ++i) outputTypes[i] = inputTypes[0];
        return 0;
    }

    bool supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t,
                                   int32_t) noexcept override {
        return floatOrHalfLikeFirst(pos, inOut);
    }

    int32_t onShapeChange(PluginTensorDesc const*, int32_t, PluginTensorDesc const*, int32_t) noexcept override {
        return 0;
    }

    IPluginV3* attachToContext(IPluginResourceContext*) noexcept override { return clone(); }

    PluginFieldCollection const* getFieldsToSerialize() noexcept override {
        mFields.clear();
        static_cast<Derived*>(this)->appendFields(mFields);
        mCollection.nbFields = static_cast<int32_t>(mFields.size());
        mCollection.fields = mFields.data();
        return &mCollection;
    }

protected:
    PluginBase() = default;
    PluginBase(PluginBase const&) : mFields(), mCollection() {}

private:
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

class QRAttentionPlugin final : public PluginBase<QRAttentionPlugin> {
public:
    static constexpr char const* kName = "QRAttention";

    QRAttentionPlugin(int32_t heads, float scale) : mHeads(heads), mScale(scale) {}

    int32_t getNbOutputs() const noexcept override { return 2; }

    // q [n, nq, dim], k/v [n, len, dim] → out [n, nq, dim], attn [n, nq, len].
    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder&) noexcept override {
        if (nbInputs != 3 || nbOutputs != 2 || inputs[0].nbDims != 3 || inputs[1].nbDims != 3) return -1;
        outputs[0] = inputs[0];
        outputs[1].nbDims = 3;
        outputs[1].d[0] = inputs[0].d[0];
        outputs[1].d[1] = inputs[0].d[1];
        outputs[1].d[2] = inputs[1].d[1];
        return 0;
    }

    int32_t enqueue(PluginTensorDesc const* in, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        auto const n = static_cast<int>(in[0].dims.d[0]), nq = static_cast<int>(in[0].dims.d[1]);
        auto const dim = static_cast<int>(in[0].dims.d[2]), len = static_cast<int>(in[1].dims.d[1]);
        return art_qr_attention(toArt(in[0].type), inputs[0], inputs[1], inputs[2], outputs[0], outputs[1], n, nq,
                                len, dim, mHeads, mScale, stream) == 0 ? 0 : -1;
    }

    void appendFields(std::vector<PluginField>& fields) {
        fields.emplace_back("num_heads", &mHeads, PluginFieldType::kINT32, 1);
        fields.emplace_back("scale", &mScale, PluginFieldType::kFLOAT32, 1);
    }

private:
    int32_t mHeads;
    float mScale;
};

class TrackletLinkPlugin final : public PluginBase<TrackletLinkPlugin> {
public:
    static constexpr char const* kName = "TrackletLink";

    TrackletLinkPlugin(float temperature, float eps) : mTemperature(temperature), mEps(eps) {}

    int32_t getNbOutputs() const noexcept override { return 3; }

    // r [b, t, k, d], s [b, k, d] → agg [b, k, d], saliency [b, t, k], coherence [b, t-1, k].
    int32_t getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t, DimsExprs* outputs,
                            int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept override {
        if (nbInputs != 2 || nbOutputs != 3 || inputs[0].nbDims != 4) return -1;
        auto const& r = inputs[0];
        outputs[0].nbDims = 3;
        outputs[0].d[0] = r.d[0];
        outputs[0].d[1] = r.d[2];
        outputs[0].d[2] = r.d[3];
        outputs[1].nbDims = 3;
        outputs[1].d[0] = r.d[0];
        outputs[1].d[1] = r.d[1];
        outputs[1].d[2] = r.d[2];
        outputs[2].nbDims = 3;
        outputs[2].d[0] = r.d[0];
        outputs[2].d[1] = exprBuilder.operation(DimensionOperation::kSUB, *r.d[1], *exprBuilder.constant(1));
        outputs[2].d[2] = r.d[2];
        return 0;
    }

    int32_t enqueue(PluginTensorDesc const* in, PluginTensorDesc const*, void const* const* inputs,
                    void* const* outputs, void*, cudaStream_t stream) noexcept override {
        auto const& d = in[0].dims.d;
        return art_tracklet_link(toArt(in[0].type), inputs[0], inputs[1], outputs[0], outputs[1], outputs[2],
                                 static_cast<int>(d[0]), static_cast<int>(d[1]), static_cast<int>(d[2]),
                                 static_cast<int>(d[3]), mTemperature, mEps, stream) == 0 ? 0 : -1;
    }

    void appendFields(std::vector<PluginField>& fields) {
        fields.emplace_back("temperature", &mTemperature, PluginFieldType::kFLOAT32, 1);
        fields.emplace_back("eps", &mEps, PluginFieldType::kFLOAT32, 1);
    }

private:
    float mTemperature;
    float mEps;
};

// Creators: the attribute names they accept, and plugins from (parser or engine) field collections.
class QRAttentionCreator final : public IPluginCreatorV3One {
public:
    QRAttentionCreator() {
        mFields = {PluginField("num_heads", nullptr, PluginFieldType::kINT32, 1),
                   PluginField("scale", nullptr, PluginFieldType::kFLOAT32, 1)};
        mCollection = {static_cast<int32_t>(mFields.size()), mFields.data()};
    }
    char const* getPluginName() const noexcept override { return QRAttentionPlugin::kName; }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mCollection; }

    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        int32_t heads = 0;
        float scale = 0.0F;
        bool haveHeads = false, haveScale = false;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
            auto const& f = fc->fields[i];
            if (std::strcmp(f.name, "num_heads") == 0) haveHeads = readInt(f, heads);
            else if (std::strcmp(f.name, "scale") == 0) haveScale = readFloat(f, scale);
        }
        if (!haveHeads || !haveScale || heads < 1) {
            logError("art::QRAttention needs the attributes num_heads (an integer >= 1) and scale (a float)");
            return nullptr;  // the parser reports the failed node
        }
        try {
            return new QRAttentionPlugin(heads, scale);
        } catch (...) {
            return nullptr;
        }
    }

private:
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

class TrackletLinkCreator final : public IPluginCreatorV3One {
public:
    TrackletLinkCreator() {
        mFields = {PluginField("temperature", nullptr, PluginFieldType::kFLOAT32, 1),
                   PluginField("eps", nullptr, PluginFieldType::kFLOAT32, 1)};
        mCollection = {static_cast<int32_t>(mFields.size()), mFields.data()};
    }
    char const* getPluginName() const noexcept override { return TrackletLinkPlugin::kName; }
    char const* getPluginVersion() const noexcept override { return kVersion; }
    char const* getPluginNamespace() const noexcept override { return kNamespace; }
    PluginFieldCollection const* getFieldNames() noexcept override { return &mCollection; }

    IPluginV3* createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept override {
        float temperature = 0.0F, eps = 1e-6F;
        bool haveTemperature = false;
        for (int32_t i = 0; fc != nullptr && i < fc->nbFields; ++i) {
            auto const& f = fc->fields[i];
            if (std::strcmp(f.name, "temperature") == 0) haveTemperature = readFloat(f, temperature);
            else if (std::strcmp(f.name, "eps") == 0) readFloat(f, eps);
        }
        if (!haveTemperature || !(temperature > 0.0F)) {
            logError("art::TrackletLink needs the attribute temperature (a float > 0)");
            return nullptr;
        }
        try {
            return new TrackletLinkPlugin(temperature, eps);
        } catch (...) {
            return nullptr;
        }
    }

private:
    std::vector<PluginField> mFields;
    PluginFieldCollection mCollection{};
};

}  // namespace art_trt

extern "C" {

// Looked up by IPluginRegistry::loadLibrary for libraries of IPluginV3 creators.
__attribute__((visibility("default"))) nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static art_trt::QRAttentionCreator qrAttention;
    static art_trt::TrackletLinkCreator trackletLink;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&qrAttention, &trackletLink};
    nbCreators = 2;
    return creators;
}

// Looked up beside getCreators: the plugins log through the logger TensorRT hands over here.
__attribute__((visibility("default"))) void setLoggerFinder(nvinfer1::ILoggerFinder* finder) {
    art_trt::gLoggerFinder = finder;
}

}  // extern "C"
