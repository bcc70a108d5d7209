// RUN: scanopt-opt %s -p scan-push-out-seq --emit=numpy | filecheck %s

// The last rung of the stage ladder: the NumPy module generated from the (optimised) scan IR.
// It imports numpy only, names follow the IR's, and the pushed-out matmul runs once before the
// step loop.
func.func @elman(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U : tensor<3x4xf32>, tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.tanh %2 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK:       import numpy as np
// CHECK-NOT:   import
// CHECK:       def elman(X, h_init, W, U, n_steps):
// CHECK:         np.matmul(X
// CHECK:         for t in range(n_steps):
// CHECK-NOT:       np.matmul(X
// CHECK:           np.matmul(h, U
// CHECK:           np.tanh(
// CHECK:         return hs
