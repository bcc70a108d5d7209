# RUN: python %s | filecheck %s
"""Frontend: the Gibbs step of an RBM (deeplearning.net's rbm.py), drawing from a Generator.

The helper `sigmoid` is inlined (its ops point at its own line), `W.T` is a transpose, the
generator is a `!scan.rng` non-sequence and each `rng.binomial` a `scan.random` draw, in the
order written. No sequences: the loop runs `n_steps` times.
"""

import numpy as np

from scanopt.compiler import print_ir
from scanopt.transforms.testing import build_step


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gibbs_vhv(v, W, bv, bh, rng):
    h_mean = sigmoid(v @ W + bh)
    h = rng.binomial(1, h_mean).astype(v.dtype)
    v_mean = sigmoid(h @ W.T + bv)
    return rng.binomial(1, v_mean).astype(v.dtype)


v0 = np.zeros((2, 6), np.float32)
W, bv, bh = np.ones((6, 3), np.float32), np.zeros(6, np.float32), np.zeros(3, np.float32)
rng = np.random.default_rng(0)
print(print_ir(build_step(gibbs_vhv, outputs_info=v0, non_sequences=[W, bv, bh, rng],
                          n_steps=10)))

# CHECK-LABEL: func.func @gibbs_vhv(%v_init: tensor<2x6xf32>, %W: tensor<6x3xf32>, %bv: tensor<6xf32>, %bh: tensor<3xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x2x6xf32> {
# CHECK-NEXT:    %vs = scan.loop init(%v_init : tensor<2x6xf32>) params(%W, %bv, %bh, %rng : tensor<6x3xf32>, tensor<6xf32>, tensor<3xf32>, !scan.rng) steps %n_steps -> tensor<?x2x6xf32> {
# CHECK-NEXT:    ^bb0(%v: tensor<2x6xf32>, %W_1: tensor<6x3xf32>, %bv_1: tensor<6xf32>, %bh_1: tensor<3xf32>, %rng_1: !scan.rng):
#
#                h_mean = sigmoid(v @ W + bh)
# CHECK-NEXT:      %0 = scan.matmul %v, %W_1 {loc = loc("{{.*}}gibbs.py":20:22)} : (tensor<2x6xf32>, tensor<6x3xf32>) -> tensor<2x3xf32>
# CHECK-NEXT:      %1 = scan.add %0, %bh_1 {loc = loc("{{.*}}gibbs.py":20:22)} : (tensor<2x3xf32>, tensor<3xf32>) -> tensor<2x3xf32>
# CHECK-NEXT:      %2 = scan.neg %1 {loc = loc("{{.*}}gibbs.py":16:28)} : (tensor<2x3xf32>) -> tensor<2x3xf32>
# CHECK-NEXT:      %3 = scan.exp %2 {loc = loc("{{.*}}gibbs.py":16:21)} : (tensor<2x3xf32>) -> tensor<2x3xf32>
# CHECK-NEXT:      %[[ONE:.*]] = arith.constant {loc = loc("{{.*}}gibbs.py":16:17)} 1 : i64
# CHECK-NEXT:      %[[DEN:.*]] = scan.add %[[ONE]], %3 {loc = loc("{{.*}}gibbs.py":16:17)} : (i64, tensor<2x3xf32>) -> tensor<2x3xf32>
# CHECK-NEXT:      %h_mean = scan.div %[[ONE]], %[[DEN]] {loc = loc("{{.*}}gibbs.py":16:12)} : (i64, tensor<2x3xf32>) -> tensor<2x3xf32>
#
#                h = rng.binomial(1, h_mean).astype(v.dtype)
# CHECK-NEXT:      %[[HS:.*]] = scan.random %rng_1(%[[ONE]], %h_mean) {loc = loc("{{.*}}gibbs.py":21:9), method = "binomial"} : !scan.rng, (i64, tensor<2x3xf32>) -> tensor<2x3xi64>
# CHECK-NEXT:      %h = scan.cast %[[HS]] {loc = loc("{{.*}}gibbs.py":21:9)} : (tensor<2x3xi64>) -> tensor<2x3xf32>
#
#                v_mean = sigmoid(h @ W.T + bv)
# CHECK-NEXT:      %[[WT:.*]] = scan.transpose %W_1 {loc = loc("{{.*}}gibbs.py":22:26), perm = array<i64: 1, 0>} : (tensor<6x3xf32>) -> tensor<3x6xf32>
# CHECK-NEXT:      %{{.*}} = scan.matmul %h, %[[WT]] {loc = loc("{{.*}}gibbs.py":22:22)} : (tensor<2x3xf32>, tensor<3x6xf32>) -> tensor<2x6xf32>
# CHECK-NEXT:      %{{.*}} = scan.add %{{.*}}, %bv_1 {loc = loc("{{.*}}gibbs.py":22:22)} : (tensor<2x6xf32>, tensor<6xf32>) -> tensor<2x6xf32>
# CHECK-NEXT:      %{{.*}} = scan.neg
# CHECK-NEXT:      %{{.*}} = scan.exp
# CHECK-NEXT:      %{{.*}} = scan.add %[[ONE]], %{{.*}}
# CHECK-NEXT:      %v_mean = scan.div %[[ONE]], %{{.*}} : (i64, tensor<2x6xf32>) -> tensor<2x6xf32>
#
#                return rng.binomial(1, v_mean).astype(v.dtype)
# CHECK-NEXT:      %[[VS:.*]] = scan.random %rng_1(%[[ONE]], %v_mean) {loc = loc("{{.*}}gibbs.py":23:12), method = "binomial"} : !scan.rng, (i64, tensor<2x6xf32>) -> tensor<2x6xi64>
# CHECK-NEXT:      %[[V:.*]] = scan.cast %[[VS]] {loc = loc("{{.*}}gibbs.py":23:12)} : (tensor<2x6xi64>) -> tensor<2x6xf32>
# CHECK-NEXT:      scan.yield %[[V]] : tensor<2x6xf32>
# CHECK-NEXT:    }
# CHECK-NEXT:    func.return %vs : tensor<?x2x6xf32>
