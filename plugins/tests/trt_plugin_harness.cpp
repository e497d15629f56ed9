// Drives libart_plugins.so the way TensorRT does, without TensorRT: dlopen, getCreators,
// setLoggerFinder; for each plugin, creation from the field types the ONNX parser hands over,
// the capability interfaces, outputs (count, types, shapes through this program's own
// IExprBuilder), format combinations, serialization and re-creation in the runtime phase,
// attachToContext, and enqueue on real data (the library's kernels run on the CPU under
// plugins/tests/cuda_emu.h). Built against each of NVIDIA's published header sets.
//
//   trt_plugin_harness LIB DATA_DIR   reads DATA_DIR/{qr_q,qr_k,qr_v,link_r,link_s}{,_f16}.bin,
//                                     writes DATA_DIR/<output>{,_f16}.bin; exit 0 when every check passed
#include <NvInferRuntime.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

int gFailures = 0;
#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            std::fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
            ++gFailures;                                                            \
        }                                                                           \
    } while (0)

// ----------------------------------------------------------------------------- shape expressions
// Each expression carries the value it has in this test; batch dimensions are not constants.
class Expr final : public apiv::VDimensionExpr {
public:
    Expr(int64_t value, bool constant) : mValue(value), mConstant(constant) {}
    bool isConstant() const override { return mConstant; }
    int64_t getConstantValue() const override { return mConstant ? mValue : -1; }
    bool isSizeTensor() const override { return false; }
    int64_t value() const { return mValue; }

private:
    int64_t mValue;
    bool mConstant;
};

class DimExpr final : public IDimensionExpr {
public:
    explicit DimExpr(Expr* expr) { mImpl = expr; }
    int64_t value() const { return static_cast<Expr*>(mImpl)->value(); }
};

class ExprImpl final : public apiv::VExprBuilder {
public:
    IDimensionExpr const* make(int64_t value, bool constant) {
        mExprs.emplace_back(value, constant);
        mDims.emplace_back(&mExprs.back());
        return &mDims.back();
    }
    IDimensionExpr const* constant(int64_t value) override { return make(value, true); }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a,
                                    IDimensionExpr const& b) override {
        int64_t const x = static_cast<DimExpr const&>(a).value(), y = static_cast<DimExpr const&>(b).value();
        int64_t r = 0;
        switch (op) {
            case DimensionOperation::kSUM: r = x + y; break;
            case DimensionOperation::kPROD: r = x * y; break;
            case DimensionOperation::kMAX: r = x > y ? x : y; break;
            case DimensionOperation::kMIN: r = x < y ? x : y; break;
            case DimensionOperation::kSUB: r = x - y; break;
            case DimensionOperation::kEQUAL: r = x == y; break;
            case DimensionOperation::kLESS: r = x < y; break;
            case DimensionOperation::kFLOOR_DIV: r = x / y; break;
            case DimensionOperation::kCEIL_DIV: r = (x + y - 1) / y; break;
        }
        return make(r, a.isConstant() && b.isConstant());
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        return nullptr;
    }

private:
    std::deque<Expr> mExprs;
    std::deque<DimExpr> mDims;
};

class ExprBuilder final : public IExprBuilder {
public:
    explicit ExprBuilder(ExprImpl* impl) { mImpl = impl; }
};

int64_t valueOf(IDimensionExpr const* e) { return static_cast<DimExpr const*>(e)->value(); }

// ----------------------------------------------------------------------------- logging
class CapturingLogger final : public ILogger {
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override {
        if (severity <= Severity::kERROR) errors.emplace_back(msg);
    }
    std::vector<std::string> errors;
};

class LoggerFinder final : public ILoggerFinder {
public:
    ILogger* findLogger() noexcept override { return &logger; }
    CapturingLogger logger;
};

// ----------------------------------------------------------------------------- data
std::vector<char> readFile(std::string const& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        std::exit(2);
    }
    return std::vector<char>(std::istreambuf_iterator<char>(f), {});
}

void writeFile(std::string const& path, std::vector<char> const& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

Dims dims(std::vector<int64_t> const& d) {
    Dims out{};
    out.nbDims = static_cast<int32_t>(d.size());
    for (size_t i = 0; i < d.size(); ++i) out.d[i] = d[i];
    return out;
}

size_t volume(std::vector<int64_t> const& d) {
    size_t v = 1;
    for (int64_t x : d) v *= static_cast<size_t>(x);
    return v;
}

// ----------------------------------------------------------------------------- one plugin's lifecycle
struct Spec {
    char const* name;
    std::vector<std::vector<int64_t>> inputs;   // concrete shapes; dimension 0 is the dynamic batch
    std::vector<std::vector<int64_t>> outputs;  // the shapes getOutputShapes must give
    std::vector<char const*> inputFiles;
    std::vector<char const*> outputFiles;
};

// The attributes as the ONNX parser hands them over: every node attribute, ints and floats in
// either width, strings as kCHAR.
struct Fields {
    std::vector<PluginField> fields;
    PluginFieldCollection collection() const {
        return PluginFieldCollection{static_cast<int32_t>(fields.size()), fields.data()};
    }
};

int32_t const kHeads32 = 8;
int64_t const kHeads64 = 8;
float const kScale32 = 0.7071f, kTemp32 = 0.1f, kEps32 = 1e-6f;
double const kScale64 = 0.7071, kTemp64 = 0.1, kEps64 = 1e-6;
char const kNs[] = "art";
char const kVer[] = "1";

std::vector<Fields> parserFields(std::string const& op, bool wide) {
    Fields f;
    if (op == "QRAttention") {
        f.fields.emplace_back("num_heads", wide ? static_cast<void const*>(&kHeads64) : &kHeads32,
                              wide ? PluginFieldType::kINT64 : PluginFieldType::kINT32, 1);
        f.fields.emplace_back("scale", wide ? static_cast<void const*>(&kScale64) : &kScale32,
                              wide ? PluginFieldType::kFLOAT64 : PluginFieldType::kFLOAT32, 1);
    } else {
        f.fields.emplace_back("temperature", wide ? static_cast<void const*>(&kTemp64) : &kTemp32,
                              wide ? PluginFieldType::kFLOAT64 : PluginFieldType::kFLOAT32, 1);
        f.fields.emplace_back("eps", wide ? static_cast<void const*>(&kEps64) : &kEps32,
                              wide ? PluginFieldType::kFLOAT64 : PluginFieldType::kFLOAT32, 1);
    }
    f.fields.emplace_back("plugin_namespace", kNs, PluginFieldType::kCHAR, 3);
    f.fields.emplace_back("plugin_version", kVer, PluginFieldType::kCHAR, 1);
    return {f};
}

void checkCreation(IPluginCreatorV3One* creator, LoggerFinder& finder, std::string const& op) {
    for (bool wide : {false, true}) {
        auto fc = parserFields(op, wide)[0];
        auto collection = fc.collection();
        std::unique_ptr<IPluginV3> plugin(creator->createPlugin(op.c_str(), &collection, TensorRTPhase::kBUILD));
        CHECK(plugin != nullptr);
    }
    auto fc = parserFields(op, false)[0];
    fc.fields.erase(fc.fields.begin());  // the required attribute left out
    auto collection = fc.collection();
    size_t const errorsBefore = finder.logger.errors.size();
    IPluginV3* missing = creator->createPlugin(op.c_str(), &collection, TensorRTPhase::kBUILD);
    CHECK(missing == nullptr);
    CHECK(finder.logger.errors.size() == errorsBefore + 1);  // said why, through TensorRT's logger
    delete missing;
}

std::vector<DynamicPluginTensorDesc> descs(Spec const& spec, DataType in, DataType out, TensorFormat format) {
    std::vector<DynamicPluginTensorDesc> all;
    for (size_t i = 0; i < spec.inputs.size() + spec.outputs.size(); ++i) {
        auto const& shape = i < spec.inputs.size() ? spec.inputs[i] : spec.outputs[i - spec.inputs.size()];
        DynamicPluginTensorDesc d{};
        d.desc.dims = d.min = d.max = d.opt = dims(shape);
        d.desc.type = i < spec.inputs.size() ? in : out;
        d.desc.format = format;
        d.desc.scale = 1.0f;
        all.push_back(d);
    }
    return all;
}

bool supportsAll(IPluginV3OneBuild* build, std::vector<DynamicPluginTensorDesc> const& d, int32_t nbIn) {
    bool all = true;
    for (int32_t pos = 0; pos < static_cast<int32_t>(d.size()); ++pos)
        all = all && build->supportsFormatCombination(pos, d.data(), nbIn, static_cast<int32_t>(d.size()) - nbIn);
    return all;
}

void checkBuildPhase(IPluginV3* plugin, Spec const& spec) {
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    CHECK(core != nullptr && build != nullptr);
    CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME) != nullptr);
    CHECK(std::strcmp(core->getPluginName(), spec.name) == 0);
    CHECK(std::strcmp(core->getPluginNamespace(), "art") == 0 && std::strcmp(core->getPluginVersion(), "1") == 0);
    auto const nbIn = static_cast<int32_t>(spec.inputs.size()), nbOut = static_cast<int32_t>(spec.outputs.size());
    CHECK(build->getNbOutputs() == nbOut);
    for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
        std::vector<DataType> ins(nbIn, t), outs(nbOut, DataType::kINT8);
        CHECK(build->getOutputDataTypes(outs.data(), nbOut, ins.data(), nbIn) == 0);
        for (DataType o : outs) CHECK(o == t);
    }
    ExprImpl impl;
    ExprBuilder exprs(&impl);
    std::vector<DimsExprs> in(nbIn), out(nbOut);
    for (int32_t i = 0; i < nbIn; ++i) {
        in[i].nbDims = static_cast<int32_t>(spec.inputs[i].size());
        for (int32_t j = 0; j < in[i].nbDims; ++j) in[i].d[j] = impl.make(spec.inputs[i][j], j != 0);
    }
    CHECK(build->getOutputShapes(in.data(), nbIn, nullptr, 0, out.data(), nbOut, exprs) == 0);
    for (int32_t i = 0; i < nbOut; ++i) {
        CHECK(out[i].nbDims == static_cast<int32_t>(spec.outputs[i].size()));
        for (int32_t j = 0; j < out[i].nbDims; ++j) CHECK(valueOf(out[i].d[j]) == spec.outputs[i][j]);
        CHECK(!out[i].d[0]->isConstant());  // the batch stays dynamic
    }
    CHECK(supportsAll(build, descs(spec, DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kLINEAR), nbIn));
    CHECK(supportsAll(build, descs(spec, DataType::kHALF, DataType::kHALF, TensorFormat::kLINEAR), nbIn));
    CHECK(!supportsAll(build, descs(spec, DataType::kFLOAT, DataType::kHALF, TensorFormat::kLINEAR), nbIn));
    CHECK(!supportsAll(build, descs(spec, DataType::kINT8, DataType::kINT8, TensorFormat::kLINEAR), nbIn));
    CHECK(!supportsAll(build, descs(spec, DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kCHW32), nbIn));
    auto d = descs(spec, DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kLINEAR);
    CHECK(build->configurePlugin(d.data(), nbIn, d.data() + nbIn, nbOut) == 0);
}

// Serialize the fields, recreate the plugin as the runtime does when it deserializes an engine.
IPluginV3* roundTrip(IPluginCreatorV3One* creator, IPluginV3* plugin) {
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc = runtime->getFieldsToSerialize();
    CHECK(fc != nullptr && fc->nbFields == 2);
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    IPluginV3* recreated = creator->createPlugin(core->getPluginName(), fc, TensorRTPhase::kRUNTIME);
    CHECK(recreated != nullptr);
    auto* again = static_cast<IPluginV3OneRuntime*>(recreated->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    PluginFieldCollection const* fc2 = again->getFieldsToSerialize();
    for (int32_t i = 0; i < fc->nbFields && i < fc2->nbFields; ++i) {
        CHECK(std::strcmp(fc->fields[i].name, fc2->fields[i].name) == 0 && fc->fields[i].type == fc2->fields[i].type);
        CHECK(std::memcmp(fc->fields[i].data, fc2->fields[i].data, 4) == 0);
    }
    return recreated;
}

void enqueue(IPluginV3* plugin, Spec const& spec, std::string const& dir, DataType type) {
    std::string const suffix = type == DataType::kHALF ? "_f16.bin" : ".bin";
    size_t const elem = type == DataType::kHALF ? 2 : 4;
    auto* runtime = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::unique_ptr<IPluginV3> attached(runtime->attachToContext(nullptr));
    CHECK(attached != nullptr);
    auto* rt = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    auto d = descs(spec, type, type, TensorFormat::kLINEAR);
    size_t const nbIn = spec.inputs.size();
    std::vector<PluginTensorDesc> in, out;
    for (size_t i = 0; i < d.size(); ++i) (i < nbIn ? in : out).push_back(d[i].desc);
    CHECK(rt->onShapeChange(in.data(), static_cast<int32_t>(in.size()), out.data(), static_cast<int32_t>(out.size())) == 0);
    std::vector<std::vector<char>> inputs, outputs;
    for (size_t i = 0; i < nbIn; ++i) {
        inputs.push_back(readFile(dir + "/" + spec.inputFiles[i] + suffix));
        CHECK(inputs.back().size() == volume(spec.inputs[i]) * elem);
    }
    for (auto const& shape : spec.outputs) outputs.emplace_back(volume(shape) * elem, static_cast<char>(0xFF));
    std::vector<void const*> inPtrs;
    std::vector<void*> outPtrs;
    for (auto& b : inputs) inPtrs.push_back(b.data());
    for (auto& b : outputs) outPtrs.push_back(b.data());
    CHECK(rt->enqueue(in.data(), out.data(), inPtrs.data(), outPtrs.data(), nullptr, nullptr) == 0);
    for (size_t i = 0; i < outputs.size(); ++i) writeFile(dir + "/" + spec.outputFiles[i] + suffix, outputs[i]);
}

// A shape the kernels refuse (17 queries or tracklets): enqueue reports an error, touches nothing.
void enqueueOutOfLimits(IPluginV3* plugin, Spec spec) {
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    for (auto& s : spec.inputs) s[s.size() == 4 ? 2 : 1] = 17;
    auto d = descs(spec, DataType::kFLOAT, DataType::kFLOAT, TensorFormat::kLINEAR);
    std::vector<PluginTensorDesc> in, out;
    for (size_t i = 0; i < d.size(); ++i) (i < spec.inputs.size() ? in : out).push_back(d[i].desc);
    std::vector<void const*> inPtrs(spec.inputs.size(), nullptr);
    std::vector<void*> outPtrs(spec.outputs.size(), nullptr);
    CHECK(rt->enqueue(in.data(), out.data(), inPtrs.data(), outPtrs.data(), nullptr, nullptr) != 0);
}

void drive(IPluginCreatorV3One* creator, LoggerFinder& finder, Spec const& spec, std::string const& dir) {
    CHECK(std::strcmp(creator->getPluginNamespace(), "art") == 0 && std::strcmp(creator->getPluginVersion(), "1") == 0);
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 2);
    checkCreation(creator, finder, spec.name);
    auto fc = parserFields(spec.name, false)[0];
    auto collection = fc.collection();
    std::unique_ptr<IPluginV3> plugin(creator->createPlugin(spec.name, &collection, TensorRTPhase::kBUILD));
    if (!plugin) return;
    checkBuildPhase(plugin.get(), spec);
    std::unique_ptr<IPluginV3> clone(plugin->clone());
    CHECK(clone != nullptr);
    std::unique_ptr<IPluginV3> runtimePlugin(roundTrip(creator, plugin.get()));
    if (!runtimePlugin) return;
    enqueue(runtimePlugin.get(), spec, dir, DataType::kFLOAT);
    enqueue(runtimePlugin.get(), spec, dir, DataType::kHALF);
    enqueueOutOfLimits(runtimePlugin.get(), spec);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s LIB DATA_DIR\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        std::fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    CHECK(getCreators != nullptr && setLoggerFinder != nullptr);
    if (getCreators == nullptr || setLoggerFinder == nullptr) return 1;
    static LoggerFinder finder;
    setLoggerFinder(&finder);
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    CHECK(count == 2);
    // art-edge-s shapes: one clip of 8 frames, 2 queries, 7×7 tokens, d = 256, 8 heads.
    Spec const qr{"QRAttention", {{8, 2, 256}, {8, 49, 256}, {8, 49, 256}}, {{8, 2, 256}, {8, 2, 49}},
                  {"qr_q", "qr_k", "qr_v"}, {"qr_out", "qr_attn"}};
    Spec const link{"TrackletLink", {{2, 8, 2, 256}, {2, 2, 256}}, {{2, 2, 256}, {2, 8, 2}, {2, 7, 2}},
                    {"link_r", "link_s"}, {"link_agg", "link_saliency", "link_coherence"}};
    int found = 0;
    for (int32_t i = 0; i < count; ++i) {
        InterfaceInfo const info = creators[i]->getInterfaceInfo();
        CHECK(std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") == 0);
        auto* creator = static_cast<IPluginCreatorV3One*>(creators[i]);
        for (Spec const* spec : {&qr, &link}) {
            if (std::strcmp(creator->getPluginName(), spec->name) == 0) {
                drive(creator, finder, *spec, argv[2]);
                ++found;
            }
        }
    }
    CHECK(found == 2);
    std::printf("%d failed checks\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
