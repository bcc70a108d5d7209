// RUN: scanopt-opt %s --split-input-file -p scan-fold-scale,dce | filecheck %s

// -(x_t @ W + h @ U + b): the negation goes into W, U and b (and scan-licm and
// scan-push-out-seq then do it once per call).
func.func @negated_sum(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U, %b : tensor<3x4xf32>, tensor<4x4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>, %b_1: tensor<4xf32>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.add %2, %b_1 : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %4 = scan.neg %3 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %5 = scan.exp %4 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %5 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @negated_sum
// CHECK:           %b_neg = scan.neg %b_1 : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      %W_neg = scan.neg %W_1 : (tensor<3x4xf32>) -> tensor<3x4xf32>
// CHECK-NEXT:      %[[XW:.*]] = scan.matmul %x_t, %W_neg : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %U_neg = scan.neg %U_1 : (tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:      %[[HU:.*]] = scan.matmul %h, %U_neg : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[S:.*]] = scan.add %[[XW]], %[[HU]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[Z:.*]] = scan.add %[[S]], %b_neg : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %{{.*}} = scan.exp %[[Z]] : (tensor<2x4xf32>) -> tensor<2x4xf32>

// -----

// Halving columns 0:4 of an 8-column block (the LSTM's sigmoid gates after scan-sigmoid-tanh):
// U is scaled by per-column factors [0.5]*4 + [1]*4; the other slice reads the same block.
func.func @halved_columns(%h_init: tensor<2x4xf32>, %U: tensor<4x8xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x8xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x8xf32>):
    %half = arith.constant 5.000000e-01 : f64
    %z = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
    %a = scan.index %z {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %g = scan.index %z {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %0 = scan.mul %a, %half : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
    %1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.tanh %g : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %1, %2 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @halved_columns
// CHECK:           %[[HALF:.*]] = scan.full %{{.*}} : (f64) -> tensor<4xf32>
// CHECK:           %[[ONE:.*]] = scan.full %{{.*}} : (f64) -> tensor<4xf32>
// CHECK-NEXT:      %scale = scan.concat %[[HALF]], %[[ONE]] {axis = 0 : i64} : (tensor<4xf32>, tensor<4xf32>) -> tensor<8xf32>
// CHECK-NEXT:      %U_scaled = scan.mul %U_1, %scale : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
// CHECK-NEXT:      %[[Z:.*]] = scan.matmul %h, %U_scaled : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:      %a = scan.index %[[Z]] {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %g = scan.index %[[Z]] {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %{{.*}} = scan.tanh %a : (tensor<2x4xf32>) -> tensor<2x4xf32>

// -----

// Negative: 0.3 is no power of two (the product would round differently), and -tanh(h) has
// nothing to fold into: both stay in the step.
func.func @not_folded(%h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %c = arith.constant 3.000000e-01 : f64
    %z = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %0 = scan.mul %z, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
    %1 = scan.tanh %h : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.neg %1 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.add %0, %2 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @not_folded
// CHECK:           %{{.*}} = scan.mul %z, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK:           %[[T:.*]] = scan.tanh %h
// CHECK-NEXT:      %{{.*}} = scan.neg %[[T]]
