// RUN: scanopt-opt %s --split-input-file -p scan-licm | filecheck %s

// A transpose of a non-sequence (`h @ W.T`) runs once, before the loop, and enters it as a new
// non-sequence.
func.func @transpose(%h_init: tensor<4xf32>, %W: tensor<4x4xf32>, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%W : tensor<4x4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %W_1: tensor<4x4xf32>):
    %0 = scan.transpose %W_1 {perm = array<i64: 1, 0>} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %1 = scan.matmul %h, %0 : (tensor<4xf32>, tensor<4x4xf32>) -> tensor<4xf32>
    scan.yield %1 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @transpose
// CHECK-NEXT:    %W_T = scan.transpose %W {contiguous, perm = array<i64: 1, 0>} : (tensor<4x4xf32>) -> tensor<4x4xf32>
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) params(%W, %W_T : tensor<4x4xf32>, tensor<4x4xf32>) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<4xf32>, %W_1: tensor<4x4xf32>, %W_T_1: tensor<4x4xf32>):
// CHECK-NEXT:      %0 = scan.matmul %h, %W_T_1 : (tensor<4xf32>, tensor<4x4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      scan.yield %0 : tensor<4xf32>
// CHECK-NEXT:    }

// -----

// A chain of invariant ops moves as a whole, constants included: `tanh(h + 2 * (b1 + b2))`.
func.func @bias_chain(%h_init: tensor<4xf32>, %b1: tensor<4xf32>, %b2: tensor<4xf32>, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%b1, %b2 : tensor<4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %b1_1: tensor<4xf32>, %b2_1: tensor<4xf32>):
    %two = arith.constant 2.000000e+00 : f64
    %0 = scan.add %b1_1, %b2_1 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    %1 = scan.mul %two, %0 : (f64, tensor<4xf32>) -> tensor<4xf32>
    %2 = scan.add %h, %1 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    %3 = scan.tanh %2 : (tensor<4xf32>) -> tensor<4xf32>
    scan.yield %3 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @bias_chain
// CHECK:         %[[SUM:.*]] = scan.add %b1, %b2 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
// CHECK:         %[[SCALED:.*]] = scan.mul %{{.*}}, %[[SUM]] : (f64, tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) params(%b1, %b2, %[[SCALED]] : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<4xf32>, %b1_1: tensor<4xf32>, %b2_1: tensor<4xf32>, %[[ARG:.*]]: tensor<4xf32>):
// CHECK-NOT:       scan.mul
// CHECK:           %{{.*}} = scan.add %h, %[[ARG]] : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      %{{.*}} = scan.tanh
// CHECK-NEXT:      scan.yield

// -----

// Negative: ops that read the carry stay, and so do random draws (each step draws anew) and
// the ops that use them, even when all their operands are invariant.
func.func @draws_and_carries_stay(%h_init: tensor<4xf32>, %W: tensor<4x4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%W, %rng : tensor<4x4xf32>, !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %W_1: tensor<4x4xf32>, %rng_1: !scan.rng):
    %0 = scan.matmul %h, %W_1 : (tensor<4xf32>, tensor<4x4xf32>) -> tensor<4xf32>
    %1 = scan.random %rng_1() {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf32>
    %2 = arith.constant 5.000000e-01 : f64
    %3 = scan.mul %1, %2 : (tensor<4xf32>, f64) -> tensor<4xf32>
    %4 = scan.add %0, %3 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    scan.yield %4 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @draws_and_carries_stay
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) params(%W, %rng : tensor<4x4xf32>, !scan.rng) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<4xf32>, %W_1: tensor<4x4xf32>, %rng_1: !scan.rng):
// CHECK-NEXT:      %0 = scan.matmul %h, %W_1 : (tensor<4xf32>, tensor<4x4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      %1 = scan.random %rng_1() {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf32>
// CHECK-NEXT:      %2 = arith.constant 5.000000e-01 : f64
// CHECK-NEXT:      %3 = scan.mul %1, %2 : (tensor<4xf32>, f64) -> tensor<4xf32>
// CHECK-NEXT:      %4 = scan.add %0, %3 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      scan.yield %4 : tensor<4xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %hs : tensor<?x4xf32>

// -----

// Negative: a loop whose body reads only the carry and constants is left as it is.
func.func @nothing_invariant(%h_init: tensor<4xf32>, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %0 = arith.constant 5.000000e-01 : f64
    %1 = scan.mul %h, %0 : (tensor<4xf32>, f64) -> tensor<4xf32>
    scan.yield %1 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @nothing_invariant
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<4xf32>):
// CHECK-NEXT:      %0 = arith.constant 5.000000e-01 : f64
// CHECK-NEXT:      %1 = scan.mul %h, %0 : (tensor<4xf32>, f64) -> tensor<4xf32>
// CHECK-NEXT:      scan.yield %1 : tensor<4xf32>
