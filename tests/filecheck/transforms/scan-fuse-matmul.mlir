// RUN: scanopt-opt %s --split-input-file -p scan-fuse-matmul | filecheck %s

// Two gates `h @ U_i`, `h @ U_f`: one matmul on the concatenated weights, then column slices.
func.func @gates(%h_init: tensor<2x4xf32>, %U_i: tensor<4x4xf32>, %U_f: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U_i, %U_f : tensor<4x4xf32>, tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_i_1: tensor<4x4xf32>, %U_f_1: tensor<4x4xf32>):
    %0 = scan.matmul %h, %U_i_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.matmul %h, %U_f_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %1, %2 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @gates
// CHECK:         ^bb0(%h: tensor<2x4xf32>, %U_i_1: tensor<4x4xf32>, %U_f_1: tensor<4x4xf32>):
// CHECK-NEXT:      %U_all = scan.concat %U_i_1, %U_f_1 {axis = 1 : i64} : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:      %hU_all = scan.matmul %h, %U_all : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:      %0 = scan.index %hU_all {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %1 = scan.index %hU_all {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %2 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %3 = scan.mul %2, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %3 : tensor<2x4xf32>
// CHECK-NOT:     scan.matmul

// -----

// Reassociation by stage: `(x_t @ W + h @ U) + b` becomes `(b + x_t @ W) + h @ U`, so that
// scan-push-out-seq can take the bias along with the input GEMM.
func.func @reassociate(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U, %b : tensor<3x4xf32>, tensor<4x4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>, %b_1: tensor<4xf32>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.add %2, %b_1 : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %4 = scan.tanh %3 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %4 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @reassociate
// CHECK:           %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %1 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %2 = scan.add %b_1, %0 : (tensor<4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %3 = scan.add %2, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %4 = scan.tanh %3 : (tensor<2x4xf32>) -> tensor<2x4xf32>

// -----

// Negative: matmuls with different left operands (`h @ U`, `x_t @ V`) stay apart.
func.func @different_lhs(%X: tensor<?x2x4xf32>, %h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %V: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%U, %V : tensor<4x4xf32>, tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>, %V_1: tensor<4x4xf32>):
    %0 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.matmul %x_t, %V_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %1, %2 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @different_lhs
// CHECK-NOT:       scan.concat
// CHECK:           %0 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %2 = scan.matmul %x_t, %V_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>

// -----

// Negative: a right operand that changes from step to step (the carry %c) is not fused.
func.func @variant_rhs(%h_init: tensor<4x4xf32>, %c_init: tensor<4x4xf32>, %U_i: tensor<4x4xf32>, %n_steps: index) -> (tensor<?x4x4xf32>, tensor<?x4x4xf32>) {
  %hs, %cs = scan.loop init(%h_init, %c_init : tensor<4x4xf32>, tensor<4x4xf32>) params(%U_i : tensor<4x4xf32>) steps %n_steps -> tensor<?x4x4xf32>, tensor<?x4x4xf32> {
  ^bb0(%h: tensor<4x4xf32>, %c: tensor<4x4xf32>, %U_i_1: tensor<4x4xf32>):
    %0 = scan.matmul %h, %U_i_1 : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    %1 = scan.matmul %h, %c : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    %2 = scan.add %0, %1 : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    scan.yield %2, %c : tensor<4x4xf32>, tensor<4x4xf32>
  }
  func.return %hs, %cs : tensor<?x4x4xf32>, tensor<?x4x4xf32>
}

// CHECK-LABEL: func.func @variant_rhs
// CHECK-NOT:       scan.concat
// CHECK:           %0 = scan.matmul %h, %U_i_1 : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:      %1 = scan.matmul %h, %c : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:      %2 = scan.add %0, %1 : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>

// -----

// Negative: a sum whose terms have different dtypes (float32 `x_t @ W`, float64 `h @ U`) is not
// regrouped: that could change NumPy's type promotion.
func.func @mixed_dtypes(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf64>, %W: tensor<3x4xf32>, %U: tensor<4x4xf64>, %b: tensor<4xf64>, %n_steps: index) -> tensor<?x2x4xf64> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf64>) params(%W, %U, %b : tensor<3x4xf32>, tensor<4x4xf64>, tensor<4xf64>) steps %n_steps -> tensor<?x2x4xf64> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf64>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf64>, %b_1: tensor<4xf64>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %h, %U_1 : (tensor<2x4xf64>, tensor<4x4xf64>) -> tensor<2x4xf64>
    %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf64>) -> tensor<2x4xf64>
    %3 = scan.add %2, %b_1 : (tensor<2x4xf64>, tensor<4xf64>) -> tensor<2x4xf64>
    scan.yield %3 : tensor<2x4xf64>
  }
  func.return %hs : tensor<?x2x4xf64>
}

// CHECK-LABEL: func.func @mixed_dtypes
// CHECK:           %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf64>) -> tensor<2x4xf64>
// CHECK-NEXT:      %3 = scan.add %2, %b_1 : (tensor<2x4xf64>, tensor<4xf64>) -> tensor<2x4xf64>
// CHECK-NEXT:      scan.yield %3 : tensor<2x4xf64>
