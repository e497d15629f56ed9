// CUDA's execution model on the host, so that the exact kernels of plugins/csrc/art_ops.cu run on a
// CPU under g++ and can be checked against the PyTorch references without a GPU.
//
// - A block's threads are fibers on one OS thread (a 6-register switch on x86-64, ucontext
//   elsewhere); blocks run one after another.
// - __syncthreads() is a block barrier. Between barriers the fibers run in forward, reverse or
//   random order (art_emu_set_order), so a missing barrier shows as a difference. Threads that
//   reach different __syncthreads() call sites, or a barrier that some threads never reach, abort
//   with a message ("divergence").
// - Warp shuffles (__shfl_xor_sync) go through a per-warp exchange between two warp barriers; all
//   32 lanes must take part.
// - Dynamic shared memory is allocated per block against a protected page and starts as NaN;
//   static __shared__ arrays (static locals here; the harness finds them in the library's symbol
//   table and registers them with art_emu_register_shared) are reset to NaN before every block.
//   Reading past the dynamic allocation faults.
// - blockIdx / threadIdx / blockDim / gridDim, the launch (the harness rewrites kernel<<<g, b, s, st>>>(…)
//   into art_emu::launch(kernel, g, b, s, st, …) and `extern __shared__ T x[];` into a call of
//   art_emu::dynamic_shared<T>()), cudaGetLastError, and __half from CUDA's own cuda_fp16.h.
// Nothing in the kernels' logic is rewritten.
#pragma once

// Before CUDA's headers: they keep a __shared__ that is already defined.
#define __shared__ static
#define __launch_bounds__(...)

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

namespace art_emu {

enum Order { kForward = 0, kReverse = 1, kRandom = 2 };
constexpr size_t kMaxDynamicShared = 48 * 1024;  // what a launch may ask for without an opt-in
constexpr size_t kStackBytes = 64 * 1024;

[[noreturn]] inline void fail(const char* what, unsigned block, unsigned thread) {
    std::fprintf(stderr, "art_emu: %s (block %u, thread %u)\n", what, block, thread);
    std::fflush(stderr);
    std::_Exit(3);
}

enum class State { kReady, kBlockBarrier, kWarpBarrier, kDone };

#if defined(__x86_64__)
// Save the callee-saved registers on this stack, store its pointer, load the other's and return
// into it. Unlike swapcontext, no system call (the signal mask stays as it is): a paper-shape
// launch switches millions of times.
extern "C" void art_emu_switch(void** save_sp, void* load_sp);
asm(R"(
.text
.globl art_emu_switch
.type art_emu_switch,@function
art_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
)");
#endif

struct Fiber {
    ucontext_t context{};  // where no fast switch exists
    void* sp = nullptr;
    std::vector<char> stack = std::vector<char>(kStackBytes);
    State state = State::kReady;
    int site = 0;  // the __syncthreads() call site it waits at
};

struct Runtime {
    int order = kForward;
    unsigned seed = 0;
    long launches = 0;
    cudaError_t last_error = cudaSuccess;
    ucontext_t scheduler{};
    void* scheduler_sp = nullptr;
    std::vector<Fiber> fibers;
    Fiber* current = nullptr;
    std::function<void()> body;
    std::vector<uint32_t> exchange;  // one 32-slot exchange per warp
    char* dynamic = nullptr;         // this block's dynamic shared memory, ending at a protected page
    size_t dynamic_bytes = 0;
    char* mapping = nullptr;         // the pages behind it
    size_t mapping_bytes = 0;
    std::vector<std::pair<char*, size_t>> static_shared;  // registered by the harness
};

inline Runtime& rt() {
    static Runtime r;
    return r;
}

inline unsigned thread_id() { return threadIdx.x; }

inline void to_scheduler() {
    Runtime& r = rt();
#if defined(__x86_64__)
    art_emu_switch(&r.current->sp, r.scheduler_sp);
#else
    swapcontext(&r.current->context, &r.scheduler);
#endif
}

inline void to_fiber(Fiber& f) {
    Runtime& r = rt();
#if defined(__x86_64__)
    art_emu_switch(&r.scheduler_sp, f.sp);
#else
    swapcontext(&r.scheduler, &f.context);
#endif
}

inline void wait(State state, int site) {
    rt().current->state = state;
    rt().current->site = site;
    to_scheduler();
}

[[noreturn]] inline void trampoline() {
    rt().body();
    rt().current->state = State::kDone;
    to_scheduler();
    std::abort();  // a finished fiber is never resumed
}

inline void start(Fiber& f) {
    f.state = State::kReady;
#if defined(__x86_64__)
    // A stack that `ret`s into the trampoline, as if it had been called (rsp ≡ 8 mod 16 at entry).
    auto top = reinterpret_cast<uintptr_t>(f.stack.data() + f.stack.size()) & ~uintptr_t{15};
    auto* slot = reinterpret_cast<void**>(top);
    slot[-1] = nullptr;                                     // the return address the trampoline never uses
    slot[-2] = reinterpret_cast<void*>(&trampoline);        // where art_emu_switch returns to
    for (int i = 3; i <= 8; ++i) slot[-i] = nullptr;        // rbp, rbx, r12-r15
    f.sp = &slot[-8];
#else
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = nullptr;
    makecontext(&f.context, reinterpret_cast<void (*)()>(&trampoline), 0);
#endif
}

// Release the warps whose live lanes all wait at a warp barrier; → whether any was released.
inline bool release_warps(unsigned block) {
    Runtime& r = rt();
    bool released = false;
    for (size_t w = 0; w * 32 < r.fibers.size(); ++w) {
        size_t begin = w * 32, end = std::min(r.fibers.size(), begin + 32);
        size_t waiting = 0;
        for (size_t t = begin; t < end; ++t) waiting += r.fibers[t].state == State::kWarpBarrier;
        if (waiting == 0) continue;
        if (waiting != end - begin)
            fail("divergence: some lanes of a warp shuffle while others are elsewhere", block,
                 static_cast<unsigned>(begin));
        for (size_t t = begin; t < end; ++t) r.fibers[t].state = State::kReady;
        released = true;
    }
    return released;
}

// Release a block barrier that every live thread reached at the same call site.
inline bool release_block(unsigned block) {
    Runtime& r = rt();
    int site = -1;
    size_t waiting = 0, done = 0;
    for (Fiber& f : r.fibers) {
        if (f.state == State::kDone) ++done;
        if (f.state != State::kBlockBarrier) continue;
        if (site >= 0 && f.site != site) fail("divergence: threads at different __syncthreads()", block, 0);
        site = f.site;
        ++waiting;
    }
    if (waiting == 0) return false;
    if (done > 0) fail("divergence: a barrier that some threads of the block never reach", block, 0);
    for (Fiber& f : r.fibers) f.state = State::kReady;
    return true;
}

inline std::vector<size_t> round_order(size_t n, std::mt19937& rng) {
    std::vector<size_t> order(n);
    for (size_t i = 0; i < n; ++i) order[i] = i;
    if (rt().order == kReverse) std::reverse(order.begin(), order.end());
    if (rt().order == kRandom) std::shuffle(order.begin(), order.end(), rng);
    return order;
}

// One block: every fiber runs until it waits or ends, in the chosen order, round after round.
inline void run_block(unsigned block, std::mt19937& rng) {
    Runtime& r = rt();
    for (Fiber& f : r.fibers) start(f);
    for (auto& [address, bytes] : r.static_shared) std::memset(address, 0xFF, bytes);  // NaN
    if (r.dynamic_bytes) std::memset(r.dynamic, 0xFF, r.dynamic_bytes);
    while (true) {
        bool ran = false;
        for (size_t t : round_order(r.fibers.size(), rng)) {
            if (r.fibers[t].state != State::kReady) continue;
            r.current = &r.fibers[t];
            threadIdx = uint3{static_cast<unsigned>(t), 0, 0};
            to_fiber(r.fibers[t]);
            ran = true;
        }
        if (release_warps(block) || release_block(block)) continue;
        bool all_done = std::all_of(r.fibers.begin(), r.fibers.end(), [](Fiber& f) { return f.state == State::kDone; });
        if (all_done) return;
        if (!ran) fail("deadlock: threads wait at barriers that can never open", block, 0);
    }
}

// `bytes` that end exactly where a protected page begins: a read or write past them faults.
inline void guarded_allocation(size_t bytes) {
    Runtime& r = rt();
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t body = (bytes + page - 1) / page * page;
    r.mapping_bytes = body + page;
    void* base = mmap(nullptr, r.mapping_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) fail("mmap failed", 0, 0);
    r.mapping = static_cast<char*>(base);
    mprotect(r.mapping + body, page, PROT_NONE);
    r.dynamic = r.mapping + body - bytes;
    r.dynamic_bytes = bytes;
}

template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t, Args... args) {
    Runtime& r = rt();
    if (block.x < 1 || block.x > 1024 || block.y != 1 || block.z != 1 || grid.x < 1 || grid.y != 1 || grid.z != 1) {
        r.last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (shared > kMaxDynamicShared) {
        r.last_error = cudaErrorInvalidValue;
        return;
    }
    ++r.launches;
    gridDim = grid;
    blockDim = block;
    r.fibers = std::vector<Fiber>(block.x);
    r.exchange.assign((block.x + 31) / 32 * 32, 0);
    if (shared) guarded_allocation(shared);
    r.body = [&] { kernel(args...); };
    std::mt19937 rng(r.seed);
    for (unsigned b = 0; b < grid.x; ++b) {
        blockIdx = uint3{b, 0, 0};
        run_block(b, rng);
    }
    if (shared) munmap(r.mapping, r.mapping_bytes);
    r.dynamic = r.mapping = nullptr;
    r.dynamic_bytes = r.mapping_bytes = 0;
    r.fibers.clear();
}

template <typename T>
T* dynamic_shared() {
    return reinterpret_cast<T*>(rt().dynamic);
}

template <typename T>
T shfl_xor(unsigned mask, T value, int lane_mask) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    Runtime& r = rt();
    const unsigned t = thread_id(), warp = t / 32, lane = t % 32;
    if (mask != 0xffffffffu) fail("shuffle with a partial mask", blockIdx.x, t);
    uint32_t bits;
    std::memcpy(&bits, &value, 4);
    r.exchange[warp * 32 + lane] = bits;
    wait(State::kWarpBarrier, 0);  // every lane has written
    bits = r.exchange[warp * 32 + (lane ^ static_cast<unsigned>(lane_mask))];
    wait(State::kWarpBarrier, 0);  // every lane has read before anyone writes again
    T out;
    std::memcpy(&out, &bits, 4);
    return out;
}

}  // namespace art_emu

// CUDA's integer min and max of device code.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

#define __syncthreads() ::art_emu::wait(::art_emu::State::kBlockBarrier, __LINE__)
template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int = 32) {
    return ::art_emu::shfl_xor(mask, value, lane_mask);
}

extern "C" {
cudaError_t cudaGetLastError(void) {
    cudaError_t e = art_emu::rt().last_error;
    art_emu::rt().last_error = cudaSuccess;
    return e;
}
// Controls for the harness: the order threads run in between barriers, and how many launches ran.
__attribute__((visibility("default"))) void art_emu_set_order(int order, unsigned seed) {
    art_emu::rt().order = order;
    art_emu::rt().seed = seed;
}
__attribute__((visibility("default"))) long art_emu_launches(void) { return art_emu::rt().launches; }
__attribute__((visibility("default"))) void art_emu_register_shared(void* address, size_t bytes) {
    art_emu::rt().static_shared.emplace_back(static_cast<char*>(address), bytes);
}
}
