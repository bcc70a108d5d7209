// RUN: scanopt-opt %s --split-input-file -p convert-scan-to-upstream | filecheck %s
// RUN: scanopt-opt %s --split-input-file --emit=mlir | filecheck %s

// convert-scan-to-upstream: scan IR to upstream func/scf/tensor/linalg/arith/math (what
// `--emit mlir` prints). tests/test_mlir_export.py checks with the real MLIR bindings that
// upstream accepts it, and with IREE that it computes what the plain loop computes.

func.func @elman(%X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U, %b : tensor<3x4xf32>, tensor<4x4xf32>, tensor<4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>, %b_1: tensor<4xf32>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %2 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %3 = scan.add %2, %b_1 : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %h_new = scan.tanh %3 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %h_new : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// An Elman step: scf.for over the steps with the carry and the history as iter_args; row t of
// the sequence by tensor.extract_slice (full-rank sizes); each matmul a linalg.matmul on a
// zero-filled out; each elementwise op one linalg.generic whose indexing maps broadcast the
// bias as NumPy does; the new h written into row t of the history. What the lowering makes
// (constants, empty tensors, zero fills) is placed before the loop.

// CHECK-LABEL: func.func @elman(
// CHECK-SAME:      %X: tensor<?x2x3xf32>, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %U: tensor<4x4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
// CHECK:         %[[ZERO:.*]] = arith.constant 0.000000e+00 : f32
// CHECK:         %[[HS0:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%{{.*}} : tensor<?x2x4xf32>)
// CHECK:         %[[OUT:.*]] = linalg.fill ins(%[[ZERO]] : f32) outs(%{{.*}} : tensor<2x4xf32>)
// CHECK:         %{{.*}}, %hs = scf.for %t = %{{.*}} to %n_steps step %{{.*}} iter_args(%h = %h_init, %hs_1 = %[[HS0]]) -> (tensor<2x4xf32>, tensor<?x2x4xf32>) {
// CHECK-NEXT:      %x_t = tensor.extract_slice %X[%t, 0, 0] [1, 2, 3] [1, 1, 1] : tensor<?x2x3xf32> to tensor<2x3xf32>
// CHECK-NEXT:      %[[XW:.*]] = linalg.matmul ins(%x_t, %W : tensor<2x3xf32>, tensor<3x4xf32>) outs(%[[OUT]] : tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[HU:.*]] = linalg.matmul ins(%h, %U : tensor<2x4xf32>, tensor<4x4xf32>) outs(%[[OUT]] : tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %[[SUM:.*]] = linalg.generic {{.*}} ins(%[[XW]], %[[HU]] : tensor<2x4xf32>, tensor<2x4xf32>)
// CHECK:             arith.addf
// CHECK:           linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%[[SUM]], %b : tensor<2x4xf32>, tensor<4xf32>)
// CHECK:           %h_new = linalg.generic
// CHECK-NEXT:      ^bb0(%[[IN:.*]]: f32, %{{.*}}: f32):
// CHECK-NEXT:        %[[TANH:.*]] = math.tanh %[[IN]] : f32
// CHECK-NEXT:        linalg.yield %[[TANH]] : f32
// CHECK:           %[[HS:.*]] = tensor.insert_slice %h_new into %hs_1[%t, 0, 0] [1, 2, 4] [1, 1, 1] : tensor<2x4xf32> into tensor<?x2x4xf32>
// CHECK-NEXT:      scf.yield %h_new, %[[HS]] : tensor<2x4xf32>, tensor<?x2x4xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %hs : tensor<?x2x4xf32>

// -----

func.func @taps_until(%U: tensor<?x3xf32>, %x0: tensor<3xf32>, %n: index) -> tensor<?x3xf32> {
  %xs = scan.loop seqs(%U, %U : tensor<?x3xf32>, tensor<?x3xf32>) init(%x0 : tensor<3xf32>) steps %n -> tensor<?x3xf32> {
  ^bb0(%u_tm2: tensor<3xf32>, %u_t: tensor<3xf32>, %x: tensor<3xf32>):
    %0 = scan.add %u_tm2, %u_t : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
    %1 = scan.add %x, %0 : (tensor<3xf32>, tensor<3xf32>) -> tensor<3xf32>
    %2 = scan.reduce %1 {kind = "sum"} : (tensor<3xf32>) -> tensor<f32>
    %3 = arith.constant 1.000000e+01 : f64
    %stop = scan.gt %2, %3 : (tensor<f32>, f64) -> tensor<i1>
    scan.yield %1 : tensor<3xf32> until %stop : tensor<i1>
  } {seq_offsets = array<i64: 0, 2>}
  func.return %xs : tensor<?x3xf32>
}

// until: scf.while, carrying the step count and a stop flag; it runs while t < n and no step
// said stop. Taps read their rows at their offsets (t and t + 2). The history is cut to the
// steps that ran.

// CHECK-LABEL: func.func @taps_until(
// CHECK:         %[[STEPS:.*]], %{{.*}}, %{{.*}}, %[[XS:.*]] = scf.while (%[[T:.*]] = %{{.*}}, %[[STOPPED:.*]] = %{{.*}}, %{{.*}} = %x0, %{{.*}} = %{{.*}}) : (index, i1, tensor<3xf32>, tensor<?x3xf32>) -> (index, i1, tensor<3xf32>, tensor<?x3xf32>) {
// CHECK-NEXT:      %[[MORE:.*]] = arith.cmpi slt, %[[T]], %n : index
// CHECK-NEXT:      %[[GOING:.*]] = arith.xori %[[STOPPED]], %{{.*}} : i1
// CHECK-NEXT:      %[[COND:.*]] = arith.andi %[[MORE]], %[[GOING]] : i1
// CHECK-NEXT:      scf.condition(%[[COND]])
// CHECK-NEXT:    } do {
// CHECK-NEXT:    ^bb0(%t: index, %{{.*}}: i1, %x: tensor<3xf32>, %xs: tensor<?x3xf32>):
// CHECK-NEXT:      %u_tm2 = tensor.extract_slice %U[%t, 0] [1, 3] [1, 1]
// CHECK-NEXT:      %[[ROW:.*]] = arith.addi %t, %{{.*}} : index
// CHECK-NEXT:      %u_t = tensor.extract_slice %U[%[[ROW]], 0] [1, 3] [1, 1]
// CHECK:           iterator_types = ["reduction"]
// CHECK:           %stop = linalg.generic
// CHECK:             arith.cmpf ogt
// CHECK:           %[[STOP:.*]] = tensor.extract %stop[] : tensor<i1>
// CHECK-NEXT:      %[[NEXT:.*]] = arith.addi %t, %{{.*}} : index
// CHECK-NEXT:      scf.yield %[[NEXT]], %[[STOP]], {{.*}} : index, i1, tensor<3xf32>, tensor<?x3xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %xs_1 = tensor.extract_slice %[[XS]][0, 0] [%[[STEPS]], 3] [1, 1] : tensor<?x3xf32> to tensor<?x3xf32>
// CHECK-NEXT:    func.return %xs_1

// -----

func.func @gibbs(%v_init: tensor<6xf32>, %W: tensor<6x4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<6xf32> {
  %v_last = scan.loop init(%v_init : tensor<6xf32>) params(%W, %rng : tensor<6x4xf32>, !scan.rng) steps %n_steps -> tensor<6xf32> {
  ^bb0(%v: tensor<6xf32>, %W_1: tensor<6x4xf32>, %rng_1: !scan.rng):
    %0 = scan.matmul %v, %W_1 : (tensor<6xf32>, tensor<6x4xf32>) -> tensor<4xf32>
    %one = arith.constant 1 : i64
    %h = scan.random %rng_1(%one, %0) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
    %1 = scan.transpose %W_1 {perm = array<i64: 1, 0>} : (tensor<6x4xf32>) -> tensor<4x6xf32>
    %2 = scan.matmul %h, %1 : (tensor<4xi64>, tensor<4x6xf32>) -> tensor<6xf64>
    %3 = scan.cast %2 : (tensor<6xf64>) -> tensor<6xf32>
    scan.yield %3 : tensor<6xf32>
  } {keep_last = array<i64: 0>, reverse}
  func.return %v_last : tensor<6xf32>
}

// A random draw is an argument of pre-drawn numbers in place of the generator, one row per
// step (read at t also when the loop runs backwards): binomial(1, p) is u < p with
// uniforms u. keep_last: the carry's final value, no history. A vector times a matrix, and
// mixed dtypes (int64 @ float32 is float64), are linalg.generic contractions.

// CHECK-LABEL: func.func @gibbs(
// CHECK-SAME:      %v_init: tensor<6xf32>, %W: tensor<6x4xf32>, %h: tensor<?x4xf64> {scan.draws = "uniform"}, %n_steps: index) -> tensor<6xf32> {
// CHECK:         %v_last = scf.for %t = %{{.*}} to %n_steps step %{{.*}} iter_args(%v = %v_init) -> (tensor<6xf32>) {
// CHECK:           %[[P:.*]] = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%v, %W
// CHECK:           %[[U:.*]] = tensor.extract_slice %h[%t, 0] [1, 4] [1, 1] : tensor<?x4xf64> to tensor<4xf64>
// CHECK-NEXT:      %h_1 = linalg.generic {{.*}} ins(%[[U]], %[[P]] : tensor<4xf64>, tensor<4xf32>) outs(%{{.*}} : tensor<4xi64>) {
// CHECK-NEXT:      ^bb0(%[[UE:.*]]: f64, %[[PE:.*]]: f32, %{{.*}}: i64):
// CHECK-NEXT:        %[[PD:.*]] = arith.extf %[[PE]] : f32 to f64
// CHECK-NEXT:        %[[LESS:.*]] = arith.cmpf olt, %[[UE]], %[[PD]] : f64
// CHECK-NEXT:        %[[DRAW:.*]] = arith.extui %[[LESS]] : i1 to i64
// CHECK-NEXT:        linalg.yield %[[DRAW]] : i64
// CHECK:           linalg.transpose ins(%W:tensor<6x4xf32>) outs(%{{.*}}:tensor<4x6xf32>) permutation = [1, 0]
// CHECK:             arith.sitofp %{{.*}} : i64 to f64
// CHECK:           scf.yield %{{.*}} : tensor<6xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %v_last : tensor<6xf32>

// -----

func.func @matmuls(%X: tensor<?x2x3xf32>, %W: tensor<3x4xf32>, %A: tensor<5x2x3xf32>, %B: tensor<5x3x4xf32>) -> (tensor<?x2x4xf32>, tensor<5x2x4xf32>) {
  %0 = scan.matmul %X, %W : (tensor<?x2x3xf32>, tensor<3x4xf32>) -> tensor<?x2x4xf32>
  %1 = scan.matmul %A, %B : (tensor<5x2x3xf32>, tensor<5x3x4xf32>) -> tensor<5x2x4xf32>
  func.return %0, %1 : tensor<?x2x4xf32>, tensor<5x2x4xf32>
}

// A stack of matrices times a matrix is one GEMM over all their rows (collapse, matmul,
// expand); matching stacks are a linalg.batch_matmul.

// CHECK-LABEL: func.func @matmuls(
// CHECK:         %[[ROWS:.*]] = tensor.collapse_shape %X {{\[\[}}0 : i64, 1 : i64], [2 : i64]] : tensor<?x2x3xf32> into tensor<?x3xf32>
// CHECK:         %[[GEMM:.*]] = linalg.matmul ins(%[[ROWS]], %W : tensor<?x3xf32>, tensor<3x4xf32>) outs(%{{.*}} : tensor<?x4xf32>) -> tensor<?x4xf32>
// CHECK:         %[[T:.*]] = tensor.dim %X, %{{.*}} : tensor<?x2x3xf32>
// CHECK-NEXT:    %[[XW:.*]] = tensor.expand_shape %[[GEMM]] {{\[\[}}0 : i64, 1 : i64], [2 : i64]] output_shape [%[[T]], 2, 4] : tensor<?x4xf32> into tensor<?x2x4xf32>
// CHECK:         %[[AB:.*]] = linalg.batch_matmul ins(%A, %B : tensor<5x2x3xf32>, tensor<5x3x4xf32>) outs(%{{.*}} : tensor<5x2x4xf32>) -> tensor<5x2x4xf32>
// CHECK-NEXT:    func.return %[[XW]], %[[AB]] : tensor<?x2x4xf32>, tensor<5x2x4xf32>
