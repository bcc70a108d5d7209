// RUN: scanopt-opt %s --split-input-file -p scan-fuse-slices | filecheck %s

// After scan-fuse-matmul the gates are column slices of one `h @ U_all`. The same op on adjacent
// slices becomes one op on the wider slice, level by level: the bias adds (their biases
// concatenated, which scan-licm then hoists), then the exps.
func.func @adjacent(%h_init: tensor<2x4xf32>, %U_all: tensor<4x8xf32>, %b_i: tensor<4xf32>, %b_f: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U_all, %b_i, %b_f : tensor<4x8xf32>, tensor<4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_all_1: tensor<4x8xf32>, %b_i_1: tensor<4xf32>, %b_f_1: tensor<4xf32>):
    %hU = scan.matmul %h, %U_all_1 : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
    %i = scan.index %hU {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %f = scan.index %hU {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %i_b = scan.add %i, %b_i_1 : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %f_b = scan.add %f, %b_f_1 : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %ei = scan.exp %i_b : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %ef = scan.exp %f_b : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %0 = scan.mul %ei, %ef : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %0 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @adjacent
// CHECK:           %hU = scan.matmul %h, %U_all_1 : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
// CHECK:           %[[B:.*]] = scan.concat %b_i_1, %b_f_1 {axis = 0 : i64} : (tensor<4xf32>, tensor<4xf32>) -> tensor<8xf32>
// CHECK-NEXT:      %[[Z:.*]] = scan.add %hU, %[[B]] : (tensor<2x8xf32>, tensor<8xf32>) -> tensor<2x8xf32>
// CHECK:           %[[E:.*]] = scan.exp %[[Z]] : (tensor<2x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:      %[[EI:.*]] = scan.index %[[E]] {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[EF:.*]] = scan.index %[[E]] {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[Y:.*]] = scan.mul %[[EI]], %[[EF]] : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %[[Y]] : tensor<2x4xf32>
// CHECK-NOT:       scan.exp

// -----

// A value shared by both slices (a constant that broadcasts along the columns) joins as it is.
func.func @shared_constant(%h_init: tensor<2x4xf32>, %U_all: tensor<4x8xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U_all : tensor<4x8xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_all_1: tensor<4x8xf32>):
    %half = arith.constant 5.000000e-01 : f64
    %hU = scan.matmul %h, %U_all_1 : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
    %a = scan.index %hU {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %b = scan.index %hU {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %ha = scan.mul %a, %half : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
    %hb = scan.mul %b, %half : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
    %0 = scan.sub %ha, %hb : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %0 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @shared_constant
// CHECK:           %[[M:.*]] = scan.mul %hU, %half : (tensor<2x8xf32>, f64) -> tensor<2x8xf32>
// CHECK-NEXT:      %{{.*}} = scan.index %[[M]] {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %{{.*}} = scan.index %[[M]] {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
// CHECK-NOT:       scan.mul

// -----

// Negative: slices 0:4 and 8:12 are not adjacent; each keeps its own exp.
func.func @not_adjacent(%h_init: tensor<2x4xf32>, %U_all: tensor<4x12xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U_all : tensor<4x12xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_all_1: tensor<4x12xf32>):
    %hU = scan.matmul %h, %U_all_1 : (tensor<2x4xf32>, tensor<4x12xf32>) -> tensor<2x12xf32>
    %a = scan.index %hU {spec = ["...", "0:4"]} : (tensor<2x12xf32>) -> tensor<2x4xf32>
    %c = scan.index %hU {spec = ["...", "8:12"]} : (tensor<2x12xf32>) -> tensor<2x4xf32>
    %ea = scan.exp %a : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %ec = scan.exp %c : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %0 = scan.mul %ea, %ec : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %0 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @not_adjacent
// CHECK:           %ea = scan.exp %a : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %ec = scan.exp %c : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %0 = scan.mul %ea, %ec : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>

// -----

// Negative: different ops on adjacent slices (tanh of one, exp of the other) stay apart.
func.func @different_ops(%h_init: tensor<2x4xf32>, %U_all: tensor<4x8xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop init(%h_init : tensor<2x4xf32>) params(%U_all : tensor<4x8xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>, %U_all_1: tensor<4x8xf32>):
    %hU = scan.matmul %h, %U_all_1 : (tensor<2x4xf32>, tensor<4x8xf32>) -> tensor<2x8xf32>
    %a = scan.index %hU {spec = ["...", "0:4"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %b = scan.index %hU {spec = ["...", "4:8"]} : (tensor<2x8xf32>) -> tensor<2x4xf32>
    %ta = scan.tanh %a : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %eb = scan.exp %b : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %0 = scan.mul %ta, %eb : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %0 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @different_ops
// CHECK:           %ta = scan.tanh %a : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %eb = scan.exp %b : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %0 = scan.mul %ta, %eb : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
