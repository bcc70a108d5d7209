// RUN: scanopt-opt %s --split-input-file -p scan-save-mem | filecheck %s

// keep="last" on a carry: the history is read only by scan.last, so the loop keeps the final
// value (its result loses the leading `?`) and lists it in keep_last.
func.func @carry(%h_init: tensor<4xf32>, %n_steps: index) -> tensor<4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %0 = arith.constant 5.000000e-01 : f64
    %1 = scan.mul %h, %0 : (tensor<4xf32>, f64) -> tensor<4xf32>
    scan.yield %1 : tensor<4xf32>
  }
  %h_last = scan.last %hs, %h_init : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %h_last : tensor<4xf32>
}

// CHECK-LABEL: func.func @carry
// CHECK-NEXT:    %h_last = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<4xf32> {
// CHECK:           scan.yield %{{.*}} : tensor<4xf32>
// CHECK-NEXT:    } {keep_last = array<i64: 0>}
// CHECK-NEXT:    func.return %h_last : tensor<4xf32>
// CHECK-NOT:     scan.last

// -----

// keep=["all", "last"]: only the second output (a per-step output, not fed back) is reduced.
func.func @per_step_output(%h_init: tensor<4xf32>, %n_steps: index) -> (tensor<?x4xf32>, tensor<4xf32>) {
  %hs, %ys = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32>, tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %0 = arith.constant 5.000000e-01 : f64
    %y = scan.mul %h, %0 : (tensor<4xf32>, f64) -> tensor<4xf32>
    %1 = arith.constant 1.000000e+00 : f64
    %2 = scan.add %y, %1 : (tensor<4xf32>, f64) -> tensor<4xf32>
    scan.yield %y, %2 : tensor<4xf32>, tensor<4xf32>
  }
  %last = scan.last %ys : (tensor<?x4xf32>) -> tensor<4xf32>
  func.return %hs, %last : tensor<?x4xf32>, tensor<4xf32>
}

// CHECK-LABEL: func.func @per_step_output
// CHECK-NEXT:    %hs, %last = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32>, tensor<4xf32> {
// CHECK:         } {keep_last = array<i64: 1>}
// CHECK-NEXT:    func.return %hs, %last : tensor<?x4xf32>, tensor<4xf32>

// -----

// Negative: the history has another use besides scan.last (it is also returned), so it must be
// kept whole.
func.func @history_also_returned(%h_init: tensor<4xf32>, %n_steps: index) -> (tensor<?x4xf32>, tensor<4xf32>) {
  %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %0 = scan.tanh %h : (tensor<4xf32>) -> tensor<4xf32>
    scan.yield %0 : tensor<4xf32>
  }
  %h_last = scan.last %hs, %h_init : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>
  func.return %hs, %h_last : tensor<?x4xf32>, tensor<4xf32>
}

// CHECK-LABEL: func.func @history_also_returned
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
// CHECK:         }
// CHECK-NOT:     keep_last
// CHECK-NEXT:    %h_last = scan.last %hs, %h_init : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>

// -----

// Negative: keep="all" (no scan.last) changes nothing.
func.func @keep_all(%h_init: tensor<4xf32>, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %0 = scan.tanh %h : (tensor<4xf32>) -> tensor<4xf32>
    scan.yield %0 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @keep_all
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<4xf32>):
// CHECK-NEXT:      %0 = scan.tanh %h : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      scan.yield %0 : tensor<4xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %hs : tensor<?x4xf32>
