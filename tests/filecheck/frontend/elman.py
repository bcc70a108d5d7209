# RUN: python %s | filecheck %s
"""Frontend: an Elman RNN step, with its weights passed as non-sequences or captured.

Each op carries the location of the user's expression (file:line:col, 1-based columns); the
Theano documentation's "Version One" (implicit W) and "Version Two" (explicit non_sequences)
compile to the same loop.
"""

import numpy as np

from scanopt.compiler import print_ir
from scanopt.transforms.testing import build_step

X = np.zeros((5, 2, 3), np.float32)
h0 = np.zeros((2, 4), np.float32)
W = np.ones((3, 4), np.float32)
U = np.ones((4, 4), np.float32)
b = np.ones(4, np.float32)


def elman(x_t, h, W, U, b):
    return np.tanh(x_t @ W + h @ U + b)


print(print_ir(build_step(elman, sequences=X, outputs_info=h0, non_sequences=[W, U, b])))

# CHECK-LABEL: func.func @elman(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
# CHECK-NEXT:    %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U, %b : tensor<3x4xf32>, tensor<4x4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
# CHECK-NEXT:    ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>, %b_1: tensor<4xf32>):
# CHECK-NEXT:      %0 = scan.matmul %x_t, %W_1 {loc = loc("{{.*}}elman.py":22:20)} : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %1 = scan.matmul %h, %U_1 {loc = loc("{{.*}}elman.py":22:30)} : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %2 = scan.add %0, %1 {loc = loc("{{.*}}elman.py":22:20)} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %3 = scan.add %2, %b_1 {loc = loc("{{.*}}elman.py":22:20)} : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %4 = scan.tanh %3 {loc = loc("{{.*}}elman.py":22:12)} : (tensor<2x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      scan.yield %4 : tensor<2x4xf32>
# CHECK-NEXT:    }
# CHECK-NEXT:    func.return %hs : tensor<?x2x4xf32>


def elman_captured(x_t, h):
    return np.tanh(x_t @ W + h @ U + b)


print(print_ir(build_step(elman_captured, sequences=X, outputs_info=h0)))

# The module globals W, U, b become loop inputs, after the scan arguments, in the order read.
# CHECK-LABEL: func.func @elman_captured(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
# CHECK-NEXT:    %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U, %b : tensor<3x4xf32>, tensor<4x4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
# CHECK-NEXT:    ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>, %b_1: tensor<4xf32>):
# CHECK-NEXT:      %0 = scan.matmul %x_t, %W_1 {loc = loc("{{.*}}elman.py":41:20)} : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %1 = scan.matmul %h, %U_1 {loc = loc("{{.*}}elman.py":41:30)} : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %2 = scan.add %0, %1 {loc = loc("{{.*}}elman.py":41:20)} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %3 = scan.add %2, %b_1 {loc = loc("{{.*}}elman.py":41:20)} : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      %4 = scan.tanh %3 {loc = loc("{{.*}}elman.py":41:12)} : (tensor<2x4xf32>) -> tensor<2x4xf32>
# CHECK-NEXT:      scan.yield %4 : tensor<2x4xf32>
