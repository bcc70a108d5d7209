// RUN: scanopt-opt %s --split-input-file -p scan-lerp | filecheck %s

// The GRU's blend, (1 - z) * h + z * hh, becomes h + z * (hh - h).
func.func @gru_blend(%h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %one = arith.constant 1 : i64
    %0 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %z = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %hh = scan.tanh %h : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %1 = scan.sub %one, %z : (i64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.mul %1, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %z, %hh : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %h_new = scan.add %2, %3 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %h_new : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @gru_blend
// CHECK:           %hh = scan.tanh %h : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[D:.*]] = scan.sub %hh, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[P:.*]] = scan.mul %z, %[[D]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %h_new = scan.add %h, %[[P]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %h_new : tensor<2x4xf32>

// -----

// Terms and factors in the other order: hh * z + h * (1.0 - z).
func.func @swapped(%h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %one = arith.constant 1.000000e+00 : f64
    %0 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %z = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %hh = scan.tanh %h : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %1 = scan.mul %hh, %z : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.sub %one, %z : (f64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %h, %2 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %h_new = scan.add %1, %3 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %h_new : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @swapped
// CHECK:           %[[D:.*]] = scan.sub %hh, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[P:.*]] = scan.mul %z, %[[D]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %h_new = scan.add %h, %[[P]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>

// -----

// Negative: 1 - z is read elsewhere too, so rewriting would not save its pass.
func.func @complement_used_twice(%h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %one = arith.constant 1 : i64
    %0 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %z = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %1 = scan.sub %one, %z : (i64, tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.mul %1, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.mul %z, %0 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %4 = scan.add %2, %3 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %5 = scan.mul %4, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %5 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @complement_used_twice
// CHECK:           %[[C:.*]] = scan.sub %one, %z
// CHECK-NEXT:      %{{.*}} = scan.mul %[[C]], %h
// CHECK-NEXT:      %{{.*}} = scan.mul %z, %0
