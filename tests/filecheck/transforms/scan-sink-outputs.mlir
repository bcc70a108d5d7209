// RUN: scanopt-opt %s --split-input-file -p scan-sink-outputs | filecheck %s

// `return h, h @ W_out` with outputs_info=[h0, None]: the per-step output reads only the new
// carry (stacked anyway) and an invariant, so it becomes one GEMM on the history after the loop.
func.func @readout(%X: tensor<?x2x4xf32>, %h_init: tensor<2x4xf32>, %W: tensor<4x4xf32>, %W_out: tensor<4x3xf32>, %n_steps: index) -> (tensor<?x2x4xf32>, tensor<?x2x3xf32>) {
  %hs, %ys = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %W_out : tensor<4x4xf32>, tensor<4x3xf32>) steps %n_steps -> tensor<?x2x4xf32>, tensor<?x2x3xf32> {
  ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %W_1: tensor<4x4xf32>, %W_out_1: tensor<4x3xf32>):
    %0 = scan.matmul %h, %W_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %1 = scan.add %x_t, %0 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %h_1 = scan.tanh %1 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %y = scan.matmul %h_1, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
    scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x3xf32>
  }
  func.return %hs, %ys : tensor<?x2x4xf32>, tensor<?x2x3xf32>
}

// CHECK-LABEL: func.func @readout
// CHECK-NEXT:    %hs = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %W_out : tensor<4x4xf32>, tensor<4x3xf32>) steps %n_steps -> tensor<?x2x4xf32> {
// CHECK-NEXT:    ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %W_1: tensor<4x4xf32>, %W_out_1: tensor<4x3xf32>):
// CHECK-NEXT:      %0 = scan.matmul %h, %W_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %1 = scan.add %x_t, %0 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      %h_1 = scan.tanh %1 : (tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %h_1 : tensor<2x4xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %ys = scan.matmul %hs, %W_out : (tensor<?x2x4xf32>, tensor<4x3xf32>) -> tensor<?x2x3xf32>
// CHECK-NEXT:    func.return %hs, %ys : tensor<?x2x4xf32>, tensor<?x2x3xf32>

// -----

// Negative: `h @ W_out` on the *previous* carry is not a function of the stacked history
// (it is the history shifted by one step); it stays in the loop.
func.func @previous_carry(%X: tensor<?x2x4xf32>, %h_init: tensor<2x4xf32>, %W: tensor<4x4xf32>, %W_out: tensor<4x3xf32>, %n_steps: index) -> (tensor<?x2x4xf32>, tensor<?x2x3xf32>) {
  %hs, %ys = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%W, %W_out : tensor<4x4xf32>, tensor<4x3xf32>) steps %n_steps -> tensor<?x2x4xf32>, tensor<?x2x3xf32> {
  ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %W_1: tensor<4x4xf32>, %W_out_1: tensor<4x3xf32>):
    %0 = scan.matmul %h, %W_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %1 = scan.add %x_t, %0 : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    %h2 = scan.tanh %1 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %y = scan.matmul %h, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
    scan.yield %h2, %y : tensor<2x4xf32>, tensor<2x3xf32>
  }
  func.return %hs, %ys : tensor<?x2x4xf32>, tensor<?x2x3xf32>
}

// CHECK-LABEL: func.func @previous_carry
// CHECK-NEXT:    %hs, %ys = scan.loop
// CHECK:           %y = scan.matmul %h, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:      scan.yield %h2, %y : tensor<2x4xf32>, tensor<2x3xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %hs, %ys

// -----

// Negative: `h * x_t` reads the sequence slice, which the loop does not stack.
func.func @reads_sequence(%X: tensor<?x2x4xf32>, %h_init: tensor<2x4xf32>, %W: tensor<4x4xf32>, %n_steps: index) -> (tensor<?x2x4xf32>, tensor<?x2x4xf32>) {
  %hs, %ys = scan.loop seqs(%X : tensor<?x2x4xf32>) init(%h_init : tensor<2x4xf32>) params(%W : tensor<4x4xf32>) steps %n_steps -> tensor<?x2x4xf32>, tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x4xf32>, %h: tensor<2x4xf32>, %W_1: tensor<4x4xf32>):
    %0 = scan.matmul %h, %W_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %h_1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %y = scan.mul %h_1, %x_t : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
    scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x4xf32>
  }
  func.return %hs, %ys : tensor<?x2x4xf32>, tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @reads_sequence
// CHECK-NEXT:    %hs, %ys = scan.loop
// CHECK:           %y = scan.mul %h_1, %x_t : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x4xf32>

// -----

// Negative: an output that scan-save-mem already turned into a last value (keep_last) holds no
// history to compute from; it stays in the loop.
func.func @kept_last(%h_init: tensor<2x4xf32>, %W: tensor<4x4xf32>, %W_out: tensor<4x3xf32>, %n_steps: index) -> (tensor<?x2x4xf32>, tensor<2x3xf32>) {
  %hs, %y_last = scan.loop init(%h_init : tensor<2x4xf32>) params(%W, %W_out : tensor<4x4xf32>, tensor<4x3xf32>) steps %n_steps -> tensor<?x2x4xf32>, tensor<2x3xf32> {
  ^bb0(%h: tensor<2x4xf32>, %W_1: tensor<4x4xf32>, %W_out_1: tensor<4x3xf32>):
    %0 = scan.matmul %h, %W_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %h_1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %y = scan.matmul %h_1, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
    scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x3xf32>
  } {keep_last = array<i64: 1>}
  func.return %hs, %y_last : tensor<?x2x4xf32>, tensor<2x3xf32>
}

// CHECK-LABEL: func.func @kept_last
// CHECK-NEXT:    %hs, %y_last = scan.loop
// CHECK:           %y = scan.matmul %h_1, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:      scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x3xf32>
// CHECK-NEXT:    } {keep_last = array<i64: 1>}

// -----

// Negative: keep=["all", "last"] before scan-save-mem: the output's history is read only by
// scan.last. Sinking would compute and store all T steps of `y` to return the last one, so the
// output stays in the loop (and scan-save-mem then keeps O(1) of it).
func.func @last_of_history(%h_init: tensor<2x4xf32>, %W: tensor<4x4xf32>, %W_out: tensor<4x3xf32>, %n_steps: index) -> (tensor<?x2x4xf32>, tensor<2x3xf32>) {
  %hs, %ys = scan.loop init(%h_init : tensor<2x4xf32>) params(%W, %W_out : tensor<4x4xf32>, tensor<4x3xf32>) steps %n_steps -> tensor<?x2x4xf32>, tensor<?x2x3xf32> {
  ^bb0(%h: tensor<2x4xf32>, %W_1: tensor<4x4xf32>, %W_out_1: tensor<4x3xf32>):
    %0 = scan.matmul %h, %W_1 : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %h_1 = scan.tanh %0 : (tensor<2x4xf32>) -> tensor<2x4xf32>
    %y = scan.matmul %h_1, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
    scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x3xf32>
  }
  %y_last = scan.last %ys : (tensor<?x2x3xf32>) -> tensor<2x3xf32>
  func.return %hs, %y_last : tensor<?x2x4xf32>, tensor<2x3xf32>
}

// CHECK-LABEL: func.func @last_of_history
// CHECK-NEXT:    %hs, %ys = scan.loop
// CHECK:           %y = scan.matmul %h_1, %W_out_1 : (tensor<2x4xf32>, tensor<4x3xf32>) -> tensor<2x3xf32>
// CHECK-NEXT:      scan.yield %h_1, %y : tensor<2x4xf32>, tensor<2x3xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %y_last = scan.last %ys : (tensor<?x2x3xf32>) -> tensor<2x3xf32>
// CHECK-NOT:     scan.matmul %hs
