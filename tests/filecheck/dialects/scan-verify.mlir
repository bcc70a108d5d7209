// RUN: scanopt-opt %s --split-input-file --verify-diagnostics | filecheck %s

// One case per verifier message of the scan dialect: expected, got, then the rule.

func.func @yield_type(%h0: tensor<4xf32>, %n: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %0 = scan.cast %h : (tensor<4xf32>) -> tensor<4xf64>
    scan.yield %0 : tensor<4xf64>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK:      scan-verify.mlir: error: Expected yield #0 to be tensor<4xf32>, but got tensor<4xf64>. scan.yield must match the carry types of scan.loop.
// CHECK-NEXT: note: in %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> {

// -----

func.func @yield_count(%h0: tensor<4xf32>, %n: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    scan.yield %h, %h : tensor<4xf32>, tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK: Expected scan.yield to yield 1 values, but got 2.

// -----

func.func @carry_type(%h0: tensor<4xf32>, %n: index) -> tensor<?x4xf64> {
  %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf64> {
  ^bb0(%h: tensor<4xf64>):
    scan.yield %h : tensor<4xf64>
  }
  func.return %hs : tensor<?x4xf64>
}

// CHECK: Expected carry #0 to be tensor<4xf32>, but got tensor<4xf64>. The block argument of a carry must match its initial value.

// -----

func.func @slice_type(%X: tensor<?x3xf32>, %n: index) -> tensor<?x4xf32> {
  %ys = scan.loop seqs(%X : tensor<?x3xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%x_t: tensor<4xf32>):
    scan.yield %x_t : tensor<4xf32>
  }
  func.return %ys : tensor<?x4xf32>
}

// CHECK: Expected slice #0 to be one element of tensor<?x3xf32>, but got tensor<4xf32>.

// -----

func.func @block_arguments(%h0: tensor<4xf32>, %n: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %extra: tensor<4xf32>):
    scan.yield %h : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK: Expected 1 block arguments (sequence slices, carries, non-sequences), but got 2.

// -----

func.func @stacked_result(%h0: tensor<4xf32>, %n: index) -> tensor<?x5xf32> {
  %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x5xf32> {
  ^bb0(%h: tensor<4xf32>):
    scan.yield %h : tensor<4xf32>
  }
  func.return %hs : tensor<?x5xf32>
}

// CHECK: Expected result #0 to stack tensor<4xf32>, but it is tensor<?x5xf32>.

// -----

func.func @keep_last_result(%h0: tensor<4xf32>, %n: index) -> tensor<?x4xf32> {
  %h_last = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    scan.yield %h : tensor<4xf32>
  } {keep_last = array<i64: 0>}
  func.return %h_last : tensor<?x4xf32>
}

// CHECK: Expected result #0 (last value only) to be tensor<4xf32>, but it is tensor<?x4xf32>.

// -----

func.func @reduce_kind(%x: tensor<4xf32>) -> tensor<f32> {
  %0 = scan.reduce %x {kind = "prod"} : (tensor<4xf32>) -> tensor<f32>
  func.return %0 : tensor<f32>
}

// CHECK: Expected kind in ('sum', 'mean', 'max', 'min'), but got 'prod'.

// -----

func.func @index_operands(%W: tensor<3x4xf32>, %i: tensor<i64>) -> tensor<f32> {
  %0 = scan.index %W, %i {spec = ["?", "?"]} : (tensor<3x4xf32>, tensor<i64>) -> tensor<f32>
  func.return %0 : tensor<f32>
}

// CHECK: Expected 2 index operands for spec, but got 1.

// -----

func.func @random_method(%rng: !scan.rng) -> tensor<4xf64> {
  %0 = scan.random %rng() {method = "gamma", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf64>
  func.return %0 : tensor<4xf64>
}

// CHECK: Expected method in [{{.*}}'binomial'{{.*}}], got 'gamma'.

// -----

func.func @random_parameters(%rng: !scan.rng, %p: f64) -> tensor<4xi64> {
  %0 = scan.random %rng(%p) {method = "binomial", size = array<i64: 4>} : !scan.rng, (f64) -> tensor<4xi64>
  func.return %0 : tensor<4xi64>
}

// CHECK: Expected 2 parameters for binomial, but got 1.

// -----

// A parse error is reported at its line of the whole file, not of the chunk.
func.func @parse_error(%x: tensor<4xf32>) {
  %0 = scan.bogus %x : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}

// CHECK:      scan-verify.mlir:[[# @LINE - 4]]:{{[0-9]+}}: error: Operation scan.bogus is not registered
// CHECK-NEXT:   %0 = scan.bogus %x : (tensor<4xf32>) -> tensor<4xf32>

// -----

func.func @until_not_scalar(%h0: tensor<4xf32>, %n: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h0 : tensor<4xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>):
    %c = arith.constant 0.000000e+00 : f64
    %stop = scan.gt %h, %c : (tensor<4xf32>, f64) -> tensor<4xi1>
    scan.yield %h : tensor<4xf32> until %stop : tensor<4xi1>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK: Expected the until condition to be a scalar, but got tensor<4xi1>.

// -----

func.func @offsets_count(%X: tensor<?x4xf32>, %n: index) -> tensor<?x4xf32> {
  %ys = scan.loop seqs(%X : tensor<?x4xf32>) steps %n -> tensor<?x4xf32> {
  ^bb0(%x_t: tensor<4xf32>):
    scan.yield %x_t : tensor<4xf32>
  } {seq_offsets = array<i64: 0, 1>}
  func.return %ys : tensor<?x4xf32>
}

// CHECK: Expected 1 sequence offsets, but got 2.
