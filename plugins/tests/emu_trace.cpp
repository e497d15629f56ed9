// Global-memory traffic of the emulated kernels, the CPU's proxy for their speed on a GPU.
//
// The kernel source is compiled with -fsanitize=thread, whose instrumentation calls a hook before
// every load and store the compiler emits (__tsan_read16(addr), __tsan_write4(addr), …); the
// ThreadSanitizer runtime is not linked: this file defines the hooks. An access counts when it
// falls in a buffer the harness registered (the launch's inputs and outputs); shared memory, the
// stack and the emulator's own data do not. The accesses of one warp's load are the accesses its
// 32 lanes make at the same instruction (the hook's return address) for the same time (the i-th
// time each lane executes it): the sectors (32 bytes, the unit of a GPU's memory transactions)
// they touch, against the fewest that hold the bytes they ask for, is that load's coalescing.
//
// Built without instrumentation, beside the instrumented kernel (plugins/emulation.py).
#include <vector_types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

extern uint3 threadIdx, blockIdx;  // set by cuda_emu.h for the fiber that runs

namespace {

struct Region {
    uintptr_t begin, end;
};

struct Access {
    uintptr_t address;
    unsigned size;
};

// One warp-wide memory instruction: (warp, instruction address, how many times before, store?).
struct WarpAccessKey {
    unsigned warp;
    const void* pc;
    uint64_t time;
    bool store;
    bool operator==(const WarpAccessKey& o) const {
        return warp == o.warp && pc == o.pc && time == o.time && store == o.store;
    }
};

struct KeyHash {
    size_t operator()(const WarpAccessKey& k) const {
        return std::hash<const void*>()(k.pc) ^ (k.time * 0x9E3779B97F4A7C15ull) ^ (uint64_t(k.warp) << 1) ^ k.store;
    }
};

struct ThreadPc {
    unsigned thread;
    const void* pc;
    bool operator==(const ThreadPc& o) const { return thread == o.thread && pc == o.pc; }
};

struct ThreadPcHash {
    size_t operator()(const ThreadPc& k) const { return std::hash<const void*>()(k.pc) ^ (size_t(k.thread) << 7); }
};

// What report() hands out, in this order.
struct Totals {
    double bytes_read = 0, bytes_written = 0;
    double read_sectors = 0, read_sectors_min = 0, write_sectors = 0, write_sectors_min = 0;
    double read_instructions = 0, write_instructions = 0, bytes_read_16 = 0;
};

struct Trace {
    std::vector<Region> regions;
    Totals totals;
    std::unordered_map<WarpAccessKey, std::vector<Access>, KeyHash> warp_accesses;
    std::unordered_map<ThreadPc, uint64_t, ThreadPcHash> times;
    unsigned block = ~0u;
};

Trace& trace() {
    static Trace t;
    return t;
}

// Sectors touched by one warp's accesses, and the fewest that hold the distinct bytes they ask for.
void count_sectors(const std::vector<Access>& accesses, double& touched, double& fewest) {
    std::vector<uintptr_t> sectors, bytes;
    for (const Access& a : accesses) {
        for (uintptr_t s = a.address / 32; s <= (a.address + a.size - 1) / 32; ++s) sectors.push_back(s);
        for (unsigned i = 0; i < a.size; ++i) bytes.push_back(a.address + i);
    }
    std::sort(sectors.begin(), sectors.end());
    std::sort(bytes.begin(), bytes.end());
    touched += double(std::unique(sectors.begin(), sectors.end()) - sectors.begin());
    fewest += double((std::unique(bytes.begin(), bytes.end()) - bytes.begin() + 31) / 32);
}

// The warps' loads and stores of the block that just ran, into the totals.
void flush() {
    Trace& t = trace();
    for (const auto& [key, accesses] : t.warp_accesses) {
        if (key.store) {
            count_sectors(accesses, t.totals.write_sectors, t.totals.write_sectors_min);
            t.totals.write_instructions += 1;
        } else {
            count_sectors(accesses, t.totals.read_sectors, t.totals.read_sectors_min);
            t.totals.read_instructions += 1;
        }
    }
    t.warp_accesses.clear();
    t.times.clear();
}

inline void record(const void* address, unsigned size, bool store, const void* pc) {
    Trace& t = trace();
    const auto a = reinterpret_cast<uintptr_t>(address);
    const bool traced = std::any_of(t.regions.begin(), t.regions.end(),
                                    [a](const Region& r) { return a >= r.begin && a < r.end; });
    if (!traced) return;
    if (blockIdx.x != t.block) {
        flush();
        t.block = blockIdx.x;
    }
    const uint64_t time = t.times[ThreadPc{threadIdx.x, pc}]++;
    t.warp_accesses[WarpAccessKey{threadIdx.x / 32, pc, time, store}].push_back(Access{a, size});
    (store ? t.totals.bytes_written : t.totals.bytes_read) += size;
    if (!store && size == 16) t.totals.bytes_read_16 += size;
}

}  // namespace

#define ART_TRACE_HOOKS(N)                                                                                  \
    void __tsan_read##N(void* p) { record(p, N, false, __builtin_return_address(0)); }                    \
    void __tsan_write##N(void* p) { record(p, N, true, __builtin_return_address(0)); }                    \
    void __tsan_unaligned_read##N(void* p) { record(p, N, false, __builtin_return_address(0)); }          \
    void __tsan_unaligned_write##N(void* p) { record(p, N, true, __builtin_return_address(0)); }          \
    void __tsan_volatile_read##N(void* p) { record(p, N, false, __builtin_return_address(0)); }           \
    void __tsan_volatile_write##N(void* p) { record(p, N, true, __builtin_return_address(0)); }

extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void*) {}
void __tsan_func_exit() {}
void __tsan_vptr_update(void**, void*) {}
void __tsan_vptr_read(void**) {}
// The emulator's function-local statics (their guard byte): loaded as atomics, never traced.
char __tsan_atomic8_load(const volatile char* a, int) { return *a; }
void __tsan_read_range(void* p, size_t n) { record(p, unsigned(n), false, __builtin_return_address(0)); }
void __tsan_write_range(void* p, size_t n) { record(p, unsigned(n), true, __builtin_return_address(0)); }
ART_TRACE_HOOKS(1)
ART_TRACE_HOOKS(2)
ART_TRACE_HOOKS(4)
ART_TRACE_HOOKS(8)
ART_TRACE_HOOKS(16)

// The harness: forget every region and count; trace a launch's buffer; read the counts (9 numbers,
// in the order of Totals) after the launch.
__attribute__((visibility("default"))) void art_emu_trace_reset() {
    trace().regions.clear();
    trace().totals = Totals{};
    trace().block = ~0u;
}
__attribute__((visibility("default"))) void art_emu_trace_region(void* p, size_t bytes) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    trace().regions.push_back(Region{a, a + bytes});
}
__attribute__((visibility("default"))) void art_emu_trace_report(double* out) {
    flush();
    const Totals& t = trace().totals;
    const double values[] = {t.bytes_read,        t.bytes_written,      t.read_sectors,
                             t.read_sectors_min,  t.write_sectors,      t.write_sectors_min,
                             t.read_instructions, t.write_instructions, t.bytes_read_16};
    std::copy(std::begin(values), std::end(values), out);
}
}
