// RUN: scanopt-opt %s --split-input-file -p scan-fast-random | filecheck %s

// binomial(1, p) becomes `uniform < p`; the uniforms do not depend on the loop's state, so all
// steps' draws are made before the loop (float32, like p) and read as a sequence.
func.func @bernoulli(%h_init: tensor<4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %rng_1: !scan.rng):
    %half = arith.constant 5.000000e-01 : f64
    %p = scan.mul %h, %half : (tensor<4xf32>, f64) -> tensor<4xf32>
    %one = arith.constant 1 : i64
    %0 = scan.random %rng_1(%one, %p) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
    %1 = scan.cast %0 : (tensor<4xi64>) -> tensor<4xf32>
    scan.yield %1 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @bernoulli
// CHECK-NEXT:    %u_steps = scan.random %rng() steps %n_steps {method = "random", size = array<i64: 4>} : !scan.rng, () -> tensor<?x4xf32>
// CHECK-NEXT:    %hs = scan.loop seqs(%u_steps : tensor<?x4xf32>) init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%u_t: tensor<4xf32>, %h: tensor<4xf32>, %rng_1: !scan.rng):
// CHECK-NOT:       binomial
// CHECK:           %[[BELOW:.*]] = scan.lt %u_t, %p : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xi1>
// CHECK-NEXT:      %[[V:.*]] = scan.cast %[[BELOW]] : (tensor<4xi1>) -> tensor<4xf32>
// CHECK-NEXT:      scan.yield %[[V]] : tensor<4xf32>

// -----

// A Gibbs step, p = sigmoid(v @ W): the binomial draw is gone, and whatever noise replaces it
// is drawn for all steps before the loop.
func.func @gibbs(%v_init: tensor<4xf32>, %W: tensor<4x4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %vs = scan.loop init(%v_init : tensor<4xf32>) params(%W, %rng : tensor<4x4xf32>, !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%v: tensor<4xf32>, %W_1: tensor<4x4xf32>, %rng_1: !scan.rng):
    %0 = scan.matmul %v, %W_1 : (tensor<4xf32>, tensor<4x4xf32>) -> tensor<4xf32>
    %1 = scan.neg %0 : (tensor<4xf32>) -> tensor<4xf32>
    %2 = scan.exp %1 : (tensor<4xf32>) -> tensor<4xf32>
    %3 = arith.constant 1 : i64
    %4 = scan.add %3, %2 : (i64, tensor<4xf32>) -> tensor<4xf32>
    %p = scan.div %3, %4 : (i64, tensor<4xf32>) -> tensor<4xf32>
    %5 = scan.random %rng_1(%3, %p) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
    %6 = scan.cast %5 : (tensor<4xi64>) -> tensor<4xf32>
    scan.yield %6 : tensor<4xf32>
  }
  func.return %vs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @gibbs
// CHECK-NEXT:    %[[DRAWS:.*]] = scan.random %rng() steps %n_steps {{.*}} -> tensor<?x4xf32>
// CHECK-NEXT:    %vs = scan.loop seqs(%[[DRAWS]] : tensor<?x4xf32>)
// CHECK-NOT:       scan.random
// CHECK:           scan.yield

// -----

// Standard normal noise that does not depend on the state: drawn for all steps at once.
func.func @noise(%h_init: tensor<4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %rng_1: !scan.rng):
    %0 = scan.random %rng_1() {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf32>
    %1 = scan.add %h, %0 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    scan.yield %1 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @noise
// CHECK-NEXT:    %draw_steps = scan.random %rng() steps %n_steps {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<?x4xf32>
// CHECK-NEXT:    %hs = scan.loop seqs(%draw_steps : tensor<?x4xf32>) init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%draw_t: tensor<4xf32>, %h: tensor<4xf32>, %rng_1: !scan.rng):
// CHECK-NEXT:      %0 = scan.add %h, %draw_t : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:      scan.yield %0 : tensor<4xf32>

// -----

// Negative: normal(h, 1.0) takes its mean from the carry; it is drawn step by step, in the loop.
func.func @state_dependent(%h_init: tensor<4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %rng_1: !scan.rng):
    %0 = arith.constant 1.000000e+00 : f64
    %1 = scan.random %rng_1(%h, %0) {method = "normal"} : !scan.rng, (tensor<4xf32>, f64) -> tensor<4xf64>
    %2 = scan.cast %1 : (tensor<4xf64>) -> tensor<4xf32>
    scan.yield %2 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @state_dependent
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<4xf32>, %rng_1: !scan.rng):
// CHECK-NEXT:      %0 = arith.constant 1.000000e+00 : f64
// CHECK-NEXT:      %1 = scan.random %rng_1(%h, %0) {method = "normal"} : !scan.rng, (tensor<4xf32>, f64) -> tensor<4xf64>

// -----

// Negative: binomial(3, p) is not a Bernoulli draw; with p from the carry it stays as written.
func.func @binomial_n3(%h_init: tensor<4xf32>, %rng: !scan.rng, %n_steps: index) -> tensor<?x4xf32> {
  %hs = scan.loop init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
  ^bb0(%h: tensor<4xf32>, %rng_1: !scan.rng):
    %0 = arith.constant 3 : i64
    %1 = scan.random %rng_1(%0, %h) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
    %2 = scan.cast %1 : (tensor<4xi64>) -> tensor<4xf32>
    %3 = scan.add %h, %2 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
    scan.yield %3 : tensor<4xf32>
  }
  func.return %hs : tensor<?x4xf32>
}

// CHECK-LABEL: func.func @binomial_n3
// CHECK-NEXT:    %hs = scan.loop init(%h_init : tensor<4xf32>) params(%rng : !scan.rng) steps %n_steps -> tensor<?x4xf32> {
// CHECK:           %1 = scan.random %rng_1(%0, %h) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
