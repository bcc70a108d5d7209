// RUN: scanopt-opt %s --split-input-file -p scan-sigmoid-tanh | filecheck %s

// A float32 sigmoid read only by products and sums (an RNN gate) becomes 0.5 * tanh(0.5 * z) + 0.5.
func.func @gate(%h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %one = arith.constant 1 : i64
    %z = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %0 = scan.neg %z : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %1 = scan.exp %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %one, %1 : (i64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %gate = scan.div %one, %2 : (i64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %gate, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @gate
// CHECK:           %z = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %half = arith.constant 5.000000e-01 : f64
// CHECK-NEXT:      %[[S:.*]] = scan.mul %z, %half : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[T:.*]] = scan.tanh %[[S]] : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[H:.*]] = scan.mul %[[T]], %half : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:      %gate = scan.add %[[H]], %half : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:      %{{.*}} = scan.mul %gate, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NOT:       scan.exp

// -----

// float64: NumPy's float64 tanh is slower than its exp; the sigmoid stays.
func.func @float64(%h_init: tensor<2x4xf64>, %U: tensor<4x4xf64>, %n_steps: index) -> tensor<?x2x4xf64> {
  %hs = scan.loop init(%h_init : tensor<2x4xf64>) params(%U : tensor<4x4xf64>) steps %n_steps -> tensor<?x2x4xf64> {
  ^bb0(%h: tensor<2x4xf64>, %U_1: tensor<4x4xf64>):
    %one = arith.constant 1 : i64
    %z = scan.matmul %h, %U_1 : (tensor<2x4xf64>, tensor<4x4xf64>) -> tensor<2x4xf64>
    %0 = scan.neg %z : (tensor<2x4xf64>) -> tensor<2x4xf64>
    %1 = scan.exp %0 : (tensor<2x4xf64>) -> tensor<2x4xf64>
    %2 = scan.add %one, %1 : (i64, tensor<2x4xf64>) -> tensor<2x4xf64>
    %gate = scan.div %one, %2 : (i64, tensor<2x4xf64>) -> tensor<2x4xf64>
    %3 = scan.mul %gate, %h : (tensor<2x4xf64>, tensor<2x4xf64>) -> tensor<2x4xf64>
    scan.yield %3 : tensor<2x4xf64>
  }
  func.return %hs : tensor<?x2x4xf64>
}

// CHECK-LABEL: func.func @float64
// CHECK:           scan.exp
// CHECK-NOT:       scan.tanh

// -----

// A sigmoid read by a log keeps its exp: the tanh form loses the relative accuracy of tiny values.
func.func @log_sigmoid(%h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %one = arith.constant 1 : i64
    %z = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %0 = scan.neg %z : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %1 = scan.exp %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %one, %1 : (i64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %p = scan.div %one, %2 : (i64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.log %p : (tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %3 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @log_sigmoid
// CHECK:           %{{.*}} = scan.exp
// CHECK:           %p = scan.div %one
// CHECK-NEXT:      %{{.*}} = scan.log %p
// CHECK-NOT:       scan.tanh
