// Host-side check of plugins/csrc/art_math.cuh: reads "n x_1 … x_n eps" on stdin, pushes the
// values into two online-softmax states (odd and even positions, as two threads would), merges
// them, and prints the n probabilities and 1/max(||x||, eps).
#include <cstdio>
#include <vector>

#include "../csrc/art_math.cuh"

int main() {
    int n = 0;
    if (std::scanf("%d", &n) != 1 || n < 1) return 2;
    std::vector<float> x(n);
    for (float& v : x)
        if (std::scanf("%f", &v) != 1) return 2;
    float eps = 0.0f;
    if (std::scanf("%f", &eps) != 1) return 2;
    art::SoftmaxState even = art::softmax_init(), odd = art::softmax_init();
    float sum_sq = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (i % 2) odd = art::softmax_push(odd, x[i]);
        else even = art::softmax_push(even, x[i]);
        sum_sq += x[i] * x[i];
    }
    const art::SoftmaxState st = art::softmax_merge(even, odd);
    for (int i = 0; i < n; ++i) std::printf("%.9g ", art::softmax_prob(st, x[i]));
    std::printf("\n%.9g\n", art::inv_norm(sum_sq, eps));
    return 0;
}
