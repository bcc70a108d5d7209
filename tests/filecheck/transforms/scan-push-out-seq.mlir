// RUN: scanopt-opt %s --split-input-file -p scan-push-out-seq | filecheck %s

// Elman: `x_t @ W` reads only a sequence slice and an invariant, so it becomes one GEMM over the
// whole sequence before the loop, `(X @ W)[t]` inside.
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

// CHECK-LABEL: func.func @elman
// CHECK-NEXT:    %XW = scan.matmul %X, %W : (tensor<?x2x3xf32>, tensor<3x4xf32>) -> tensor<?x2x4xf32>
// CHECK-NEXT:    %hs = scan.loop seqs(%X, %XW : tensor<?x2x3xf32>, tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %U : tensor<3x4xf32>, tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
// CHECK-NEXT:    ^bb0(%x_t: tensor<2x3xf32>, %xW_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>, %U_1: tensor<4x4xf32>):
// CHECK-NEXT:      %0 = scan.matmul %h, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %1 = scan.add %xW_t, %0 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %2 = scan.tanh %1 : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %2 : tensor<2x4xf32>
// CHECK-NEXT:    }

// -----

// Elementwise work on a slice and invariants moves too, as a chain: tanh(x_t * s + b).
func.func @elementwise_chain(%X: tensor<?x4xf32>, %h_init: tensor<4xf32>, %b: tensor<4xf32>, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x4xf32>) init(%h_init : tensor<4xf32>) params(%b : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%x_t: tensor<4xf32>, %h: tensor<4xf32>, %b_1: tensor<4xf32>):
    %s = arith.constant 2.000000e+00 : f64
    %0 = scan.mul %x_t, %s : (tensor<4xf32>, f64) -> tensor<4xf32>
    %1 = scan.add %0, %b_1 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    %2 = scan.tanh %1 : (tensor<4xf32>) -> tensor<4xf32>
    %3 = scan.add %h, %2 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    scan.yield %3 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @elementwise_chain
// CHECK:         %{{.*}} = scan.mul %X, %{{.*}} : (tensor<?x4xf32>, f64) -> tensor<?x4xf32>
// CHECK-NEXT:    %{{.*}} = scan.add %{{.*}}, %b : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<?x4xf32>
// CHECK-NEXT:    %[[PRE:.*]] = scan.tanh %{{.*}} : (tensor<?x4xf32>) -> tensor<?x4xf32>
// CHECK-NEXT:    %hs = scan.loop seqs(%X, %[[PRE]] : tensor<?x4xf32>, tensor<?x4xf32>)
// CHECK-NEXT:    ^bb0(%x_t: tensor<4xf32>, %[[PRE_T:.*]]: tensor<4xf32>, %h: tensor<4xf32>, %b_1: tensor<4xf32>):
// CHECK-NOT:       scan.tanh
// CHECK:           %{{.*}} = scan.add %h, %[[PRE_T]] : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>

// -----

// Negative: `tanh(x_t * h) @ U` reads the carry from its first op on; nothing moves.
func.func @reads_the_carry(%X: tensor<?x2x4xf32>, %h_init: tensor<2x4xf32>, %U: tensor<4x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
    %0 = scan.mul %x_t, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %2 = scan.matmul %1, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    scan.yield %2 : tensor<2x4xf32>
  }
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @reads_the_carry
// CHECK-NEXT:    %hs = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%U : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
// CHECK-NEXT:    ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %U_1: tensor<4x4xf32>):
// CHECK-NEXT:      %0 = scan.mul %x_t, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %2 = scan.matmul %1, %U_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %2 : tensor<2x4xf32>

// -----

// Negative: a random draw is not pure, so `x_t * draw` stays in the loop.
func.func @draws_stay(%X: tensor<?x4xf32>, %h_init: tensor<4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop seqs(%X : tensor<?x4xf32>) init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%x_t: tensor<4xf32>, %h: tensor<4xf32>, %rng_1: !scan.rng):
    %0 = scan.random %rng_1() {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf32>
    %1 = scan.mul %x_t, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    %2 = scan.add %h, %1 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    scan.yield %2 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @draws_stay
// CHECK-NEXT:    %hs = scan.loop seqs(%X : tensor<?x4xf32>)
// CHECK-NEXT:    ^bb0(%x_t: tensor<4xf32>, %h: tensor<4xf32>, %rng_1: !scan.rng):
// CHECK-NEXT:      %0 = scan.random %rng_1()
// CHECK-NEXT:      %1 = scan.mul %x_t, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>

// -----

// Theano's taps: `u[t-4] @ W` and `u[t] @ W` read one window %U (4 rows beyond the steps, as
// its argument says) at offsets 0 and 4. The same GEMM on the same window runs once; the loop
// reads its result at both offsets. An op on two taps (`u[t-4] * u[t]`) stays in the loop.
func.func @taps(%U: tensor<?x2x3xf32> {scan.extra_rows = 4 : i64}, %h_init: tensor<2x4xf32>, %W: tensor<3x4xf32>, %n_steps: index) -> tensor<?x2x4xf32> {
  %hs = scan.loop seqs(%U, %U : tensor<?x2x3xf32>, tensor<?x2x3xf32>) init(%h_init : tensor<2x4xf32>) params(%W : tensor<3x4xf32>) steps %n_steps -> tensor<?x2x4xf32> {
  ^bb0(%u_tm4: tensor<2x3xf32>, %u_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>):
    %0 = scan.matmul %u_tm4, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %1 = scan.matmul %u_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    %2 = scan.mul %u_tm4, %u_t : (tensor<2x3xf32>, tensor<2x3xf32>) -> tensor<2x3xf32>
    %3 = scan.add %0, %1 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %4 = scan.add %3, %h : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %5 = scan.reduce %2 {kind = "sum"} : (tensor<2x3xf32>) -> tensor<f32>
    %6 = scan.add %4, %5 : (tensor<2x4xf32>, tensor<f32>) -> tensor<2x4xf32>
    scan.yield %6 : tensor<2x4xf32>
  } {seq_offsets = array<i64: 0, 4>}
  func.return %hs : tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @taps
// CHECK-NEXT:    %UW = scan.matmul %U, %W : (tensor<?x2x3xf32>, tensor<3x4xf32>) -> tensor<?x2x4xf32>
// CHECK-NEXT:    %hs = scan.loop seqs(%U, %U, %UW, %UW : {{.*}}) init(%h_init : tensor<2x4xf32>)
// CHECK-NEXT:    ^bb0(%u_tm4: tensor<2x3xf32>, %u_t: tensor<2x3xf32>, %uW_t: tensor<2x4xf32>, %uW_t_1: tensor<2x4xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>):
// CHECK-NEXT:      %0 = scan.mul %u_tm4, %u_t
// CHECK-NEXT:      %1 = scan.add %uW_t, %uW_t_1
// CHECK-NOT:       scan.matmul
// CHECK:         } {seq_offsets = array<i64: 0, 4, 0, 4>}
