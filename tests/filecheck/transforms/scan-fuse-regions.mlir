// RUN: scanopt-opt %s --split-input-file -p scan-fuse-regions | filecheck %s
// RUN: scanopt-opt %s --split-input-file -p scan-fuse-regions --print-op-generic | scanopt-opt --split-input-file | filecheck %s

// The Elman step: the matmul on the carry (its right operand is a loop parameter) and the
// elementwise tail become one region; the region's inputs are the values it reads.
func.func @elman(%XW: tensor<?x4x8xf32>, %h_init: tensor<4x8xf32>, %U: tensor<8x8xf32>, %n_steps: index) -> tensor<?x4x8xf32> {
  %hs = scan.loop seqs(%XW : tensor<?x4x8xf32>) init(%h_init : tensor<4x8xf32>) params(%U : tensor<8x8xf32>) steps %n_steps -> tensor<?x4x8xf32> {
  ^bb0(%xW_t: tensor<4x8xf32>, %h: tensor<4x8xf32>, %U_1: tensor<8x8xf32>):
    %0 = scan.matmul %h, %U_1 : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
    %1 = scan.add %xW_t, %0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %h_new = scan.tanh %1 : (tensor<4x8xf32>) -> tensor<4x8xf32>
    scan.yield %h_new : tensor<4x8xf32>
  }
  func.return %hs : tensor<?x4x8xf32>
}

// CHECK-LABEL: func.func @elman
// CHECK:         ^bb0(%xW_t: tensor<4x8xf32>, %h: tensor<4x8xf32>, %U_1: tensor<8x8xf32>):
// CHECK-NEXT:      %h_new = fused.region ins(%h, %U_1, %xW_t : tensor<4x8xf32>, tensor<8x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32> {
// CHECK-NEXT:      ^bb0(%h_1: tensor<4x8xf32>, %U_2: tensor<8x8xf32>, %xW_t_1: tensor<4x8xf32>):
// CHECK-NEXT:        %0 = scan.matmul %h_1, %U_2 : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:        %1 = scan.add %xW_t_1, %0 : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:        %h_new_1 = scan.tanh %1 : (tensor<4x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:        fused.yield %h_new_1 : tensor<4x8xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:      scan.yield %h_new : tensor<4x8xf32>

// -----

// A reduction is not fused: it ends one region and the next starts after it. A constant the
// region reads is copied into it.
func.func @split(%h_init: tensor<4x8xf32>, %n_steps: index) -> tensor<?x4x8xf32> {
  %hs = scan.loop init(%h_init : tensor<4x8xf32>) steps %n_steps -> tensor<?x4x8xf32> {
  ^bb0(%h: tensor<4x8xf32>):
    %two = arith.constant 2.000000e+00 : f64
    %0 = scan.mul %h, %two : (tensor<4x8xf32>, f64) -> tensor<4x8xf32>
    %e = scan.exp %0 : (tensor<4x8xf32>) -> tensor<4x8xf32>
    %total = scan.reduce %e {kind = "sum", axis = array<i64: 1>, keepdims} : (tensor<4x8xf32>) -> tensor<4x1xf32>
    %h_new = scan.div %e, %total : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
    scan.yield %h_new : tensor<4x8xf32>
  }
  func.return %hs : tensor<?x4x8xf32>
}

// CHECK-LABEL: func.func @split
// CHECK:           %e = fused.region ins(%h : tensor<4x8xf32>) -> tensor<4x8xf32> {
// CHECK-NEXT:      ^bb0(%h_1: tensor<4x8xf32>):
// CHECK-NEXT:        %two = arith.constant 2.000000e+00 : f64
// CHECK-NEXT:        %0 = scan.mul %h_1, %two : (tensor<4x8xf32>, f64) -> tensor<4x8xf32>
// CHECK-NEXT:        %e_1 = scan.exp %0 : (tensor<4x8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:        fused.yield %e_1 : tensor<4x8xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:      %total = scan.reduce %e {kind = "sum", axis = array<i64: 1>, keepdims} : (tensor<4x8xf32>) -> tensor<4x1xf32>
// CHECK-NEXT:      %h_new = fused.region ins(%e, %total : tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32> {
// CHECK-NEXT:      ^bb0(%e_1: tensor<4x8xf32>, %total_1: tensor<4x1xf32>):
// CHECK-NEXT:        %h_new_1 = scan.div %e_1, %total_1 : (tensor<4x8xf32>, tensor<4x1xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:        fused.yield %h_new_1 : tensor<4x8xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:      scan.yield %h_new : tensor<4x8xf32>

// -----

// A matmul whose right operand changes from step to step (`h @ h.T`) is not fused: no kernel
// could stage it once. Neither is an index read from a sequence (`W[i_t]`). A transpose alone
// is no region: a region computes something.
func.func @not_fused(%I: tensor<?xi64>, %h_init: tensor<4x4xf32>, %W: tensor<10x4xf32>, %n_steps: index) -> tensor<?x4x4xf32> {
  %hs = scan.loop seqs(%I : tensor<?xi64>) init(%h_init : tensor<4x4xf32>) params(%W : tensor<10x4xf32>) steps %n_steps -> tensor<?x4x4xf32> {
  ^bb0(%i_t: tensor<i64>, %h: tensor<4x4xf32>, %W_1: tensor<10x4xf32>):
    %hT = scan.transpose %h {perm = array<i64: 1, 0>} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %0 = scan.matmul %h, %hT : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    %row = scan.index %W_1, %i_t {spec = ["?"]} : (tensor<10x4xf32>, tensor<i64>) -> tensor<4xf32>
    %h_new = scan.add %0, %row : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<4x4xf32>
    scan.yield %h_new : tensor<4x4xf32>
  }
  func.return %hs : tensor<?x4x4xf32>
}

// CHECK-LABEL: func.func @not_fused
// CHECK:           %hT = scan.transpose %h {perm = array<i64: 1, 0>} : (tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:      %0 = scan.matmul %h, %hT : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:      %row = scan.index %W_1, %i_t {spec = ["?"]} : (tensor<10x4xf32>, tensor<i64>) -> tensor<4xf32>
// CHECK-NEXT:      %h_new = fused.region ins(%0, %row : tensor<4x4xf32>, tensor<4xf32>) -> tensor<4x4xf32> {
// CHECK:             scan.add
// CHECK-NEXT:        fused.yield
