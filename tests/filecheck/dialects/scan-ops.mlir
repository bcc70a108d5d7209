// RUN: scanopt-opt %s --split-input-file | filecheck %s
// RUN: SCANOPT_ROUNDTRIP
// RUN: SCANOPT_GENERIC_ROUNDTRIP

// Every op of the scan dialect, in its custom form: printing what was parsed gives the same text
// (first RUN), and so does going through the generic form and back (SCANOPT_ROUNDTRIP).

// The loop: sequences, carries, non-sequences and n_steps are each optional; `reverse` is
// go_backwards, `keep_last` lists results that hold only the value after the last step.
func.func @loop_forms(%X: tensor<?x2x3xf32>, %h0: tensor<2x4xf32>, %W: tensor<3x4xf32>, %n: index) -> (tensor<?x2x4xf32>, tensor<2x4xf32>, tensor<?x2x4xf32>) {
  %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h0 : tensor<2x4xf32>) params(%W : tensor<3x4xf32>) steps %n -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    scan.yield %0 : tensor<2x4xf32>
  } {reverse}
  %last = scan.loop init(%h0 : tensor<2x4xf32>) steps %n -> tensor<2x4xf32> {
  ^bb0(%h: tensor<2x4xf32>):
    scan.yield %h : tensor<2x4xf32>
  } {keep_last = array<i64: 0>}
  %ys = scan.loop seqs(%X : tensor<?x2x3xf32>) params(%W : tensor<3x4xf32>) -> tensor<?x2x4xf32> {
  ^bb0(%x_t: tensor<2x3xf32>, %W_1: tensor<3x4xf32>):
    %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
    scan.yield %0 : tensor<2x4xf32>
  }
  func.return %hs, %last, %ys : tensor<?x2x4xf32>, tensor<2x4xf32>, tensor<?x2x4xf32>
}

// CHECK-LABEL: func.func @loop_forms
// CHECK:         %hs = scan.loop seqs(%X : tensor<?x2x3xf32>) init(%h0 : tensor<2x4xf32>) params(%W : tensor<3x4xf32>) steps %n -> tensor<?x2x4xf32> {
// CHECK-NEXT:    ^bb0(%x_t: tensor<2x3xf32>, %h: tensor<2x4xf32>, %W_1: tensor<3x4xf32>):
// CHECK-NEXT:      %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %0 : tensor<2x4xf32>
// CHECK-NEXT:    } {reverse}
// CHECK-NEXT:    %last = scan.loop init(%h0 : tensor<2x4xf32>) steps %n -> tensor<2x4xf32> {
// CHECK-NEXT:    ^bb0(%h: tensor<2x4xf32>):
// CHECK-NEXT:      scan.yield %h : tensor<2x4xf32>
// CHECK-NEXT:    } {keep_last = array<i64: 0>}
// CHECK-NEXT:    %ys = scan.loop seqs(%X : tensor<?x2x3xf32>) params(%W : tensor<3x4xf32>) -> tensor<?x2x4xf32> {
// CHECK-NEXT:    ^bb0(%x_t: tensor<2x3xf32>, %W_1: tensor<3x4xf32>):
// CHECK-NEXT:      %0 = scan.matmul %x_t, %W_1 : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:      scan.yield %0 : tensor<2x4xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    func.return %hs, %last, %ys : tensor<?x2x4xf32>, tensor<2x4xf32>, tensor<?x2x4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "loop_forms"
// CHECK-GENERIC:         %hs = "scan.loop"(%X, %h0, %W, %n) <{reverse, operandSegmentSizes = array<i32: 1, 1, 1, 1>}> ({
// CHECK-GENERIC:           "scan.yield"(%0) <{operandSegmentSizes = array<i32: 1, 0>}> : (tensor<2x4xf32>) -> ()
// CHECK-GENERIC-NEXT:    }) : (tensor<?x2x3xf32>, tensor<2x4xf32>, tensor<3x4xf32>, index) -> tensor<?x2x4xf32>
// CHECK-GENERIC-NEXT:    %last = "scan.loop"(%h0, %n) <{keep_last = array<i64: 0>, operandSegmentSizes = array<i32: 0, 1, 0, 1>}> ({
// CHECK-GENERIC:         %ys = "scan.loop"(%X, %W) <{operandSegmentSizes = array<i32: 1, 0, 1, 0>}> ({

// -----

// Theano's taps and until: one array read at two taps is two sequences of the loop with other
// `seq_offsets` (the row each reads at step 0); `until` on scan.yield stops the loop after the
// first step where it holds.
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

// CHECK-LABEL: func.func @taps_until
// CHECK:         %xs = scan.loop seqs(%U, %U : tensor<?x3xf32>, tensor<?x3xf32>) init(%x0 : tensor<3xf32>) steps %n -> tensor<?x3xf32> {
// CHECK:           scan.yield %1 : tensor<3xf32> until %stop : tensor<i1>
// CHECK-NEXT:    } {seq_offsets = array<i64: 0, 2>}

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "taps_until"
// CHECK-GENERIC:         "scan.yield"(%1, %stop) <{operandSegmentSizes = array<i32: 1, 1>}> : (tensor<3xf32>, tensor<i1>) -> ()

// -----

// Elementwise ops follow NumPy: operands broadcast, Python scalars (f64, i64) stay weakly typed.
func.func @unary(%x: tensor<4xf32>, %m: tensor<4xi1>) {
  %neg = scan.neg %x : (tensor<4xf32>) -> tensor<4xf32>
  %exp = scan.exp %x : (tensor<4xf32>) -> tensor<4xf32>
  %log = scan.log %x : (tensor<4xf32>) -> tensor<4xf32>
  %tanh = scan.tanh %x : (tensor<4xf32>) -> tensor<4xf32>
  %sin = scan.sin %x : (tensor<4xf32>) -> tensor<4xf32>
  %cos = scan.cos %x : (tensor<4xf32>) -> tensor<4xf32>
  %sqrt = scan.sqrt %x : (tensor<4xf32>) -> tensor<4xf32>
  %abs = scan.abs %x : (tensor<4xf32>) -> tensor<4xf32>
  %not = scan.not %m : (tensor<4xi1>) -> tensor<4xi1>
  func.return
}

// CHECK-LABEL: func.func @unary
// CHECK-NEXT:    %neg = scan.neg %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %exp = scan.exp %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %log = scan.log %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %tanh = scan.tanh %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %sin = scan.sin %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %cos = scan.cos %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %sqrt = scan.sqrt %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %abs = scan.abs %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %not = scan.not %m : (tensor<4xi1>) -> tensor<4xi1>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "unary"
// CHECK-GENERIC:         %neg = "scan.neg"(%x) : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-GENERIC:         %not = "scan.not"(%m) : (tensor<4xi1>) -> tensor<4xi1>

// -----

func.func @binary(%x: tensor<2x4xf32>, %b: tensor<4xf32>, %m: tensor<2x4xi1>) {
  %c = arith.constant 2.000000e+00 : f64
  %add = scan.add %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %sub = scan.sub %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %mul = scan.mul %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
  %div = scan.div %c, %x : (f64, tensor<2x4xf32>) -> tensor<2x4xf32>
  %floordiv = scan.floordiv %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
  %mod = scan.mod %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
  %pow = scan.pow %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
  %max = scan.maximum %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %min = scan.minimum %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %eq = scan.eq %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
  %ne = scan.ne %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
  %lt = scan.lt %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
  %le = scan.le %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
  %gt = scan.gt %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
  %ge = scan.ge %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
  %and = scan.and %eq, %m : (tensor<2x4xi1>, tensor<2x4xi1>) -> tensor<2x4xi1>
  %or = scan.or %ne, %m : (tensor<2x4xi1>, tensor<2x4xi1>) -> tensor<2x4xi1>
  func.return
}

// CHECK-LABEL: func.func @binary
// CHECK-NEXT:    %c = arith.constant 2.000000e+00 : f64
// CHECK-NEXT:    %add = scan.add %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %sub = scan.sub %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %mul = scan.mul %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:    %div = scan.div %c, %x : (f64, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %floordiv = scan.floordiv %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:    %mod = scan.mod %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:    %pow = scan.pow %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:    %max = scan.maximum %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %min = scan.minimum %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %eq = scan.eq %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
// CHECK-NEXT:    %ne = scan.ne %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
// CHECK-NEXT:    %lt = scan.lt %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
// CHECK-NEXT:    %le = scan.le %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
// CHECK-NEXT:    %gt = scan.gt %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
// CHECK-NEXT:    %ge = scan.ge %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xi1>
// CHECK-NEXT:    %and = scan.and %eq, %m : (tensor<2x4xi1>, tensor<2x4xi1>) -> tensor<2x4xi1>
// CHECK-NEXT:    %or = scan.or %ne, %m : (tensor<2x4xi1>, tensor<2x4xi1>) -> tensor<2x4xi1>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "binary"
// CHECK-GENERIC:         %mul = "scan.mul"(%x, %c) : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>

// -----

func.func @select_and_fill(%x: tensor<4xf32>, %m: tensor<4xi1>) {
  %lo = arith.constant -1.000000e+00 : f64
  %hi = arith.constant 1.000000e+00 : f64
  %zero = arith.constant 0 : i64
  %where = scan.where %m, %x, %hi : (tensor<4xi1>, tensor<4xf32>, f64) -> tensor<4xf32>
  %clip = scan.clip %x, %lo, %hi : (tensor<4xf32>, f64, f64) -> tensor<4xf32>
  %cast = scan.cast %m : (tensor<4xi1>) -> tensor<4xf32>
  %full = scan.full %zero : (i64) -> tensor<2x4xf32>
  func.return
}

// CHECK-LABEL: func.func @select_and_fill
// CHECK:         %where = scan.where %m, %x, %hi : (tensor<4xi1>, tensor<4xf32>, f64) -> tensor<4xf32>
// CHECK-NEXT:    %clip = scan.clip %x, %lo, %hi : (tensor<4xf32>, f64, f64) -> tensor<4xf32>
// CHECK-NEXT:    %cast = scan.cast %m : (tensor<4xi1>) -> tensor<4xf32>
// CHECK-NEXT:    %full = scan.full %zero : (i64) -> tensor<2x4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "select_and_fill"
// CHECK-GENERIC:         %where = "scan.where"(%m, %x, %hi) : (tensor<4xi1>, tensor<4xf32>, f64) -> tensor<4xf32>

// -----

// Linear algebra, reductions and shape ops; properties are printed in the attribute dictionary.
func.func @arrays(%x: tensor<2x3xf32>, %W: tensor<3x4xf32>, %B: tensor<5x2x3xf32>, %i: tensor<i64>) {
  %mm = scan.matmul %x, %W : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
  %bmm = scan.matmul %B, %W : (tensor<5x2x3xf32>, tensor<3x4xf32>) -> tensor<5x2x4xf32>
  %sum = scan.reduce %mm {kind = "sum", axis = array<i64: 1>, keepdims} : (tensor<2x4xf32>) -> tensor<2x1xf32>
  %mean = scan.reduce %mm {kind = "mean"} : (tensor<2x4xf32>) -> tensor<f32>
  %max = scan.reduce %mm {kind = "max", axis = array<i64: 0>} : (tensor<2x4xf32>) -> tensor<4xf32>
  %min = scan.reduce %mm {kind = "min"} : (tensor<2x4xf32>) -> tensor<f32>
  %WT = scan.transpose %W {perm = array<i64: 1, 0>} : (tensor<3x4xf32>) -> tensor<4x3xf32>
  %WT_c = scan.transpose %W {contiguous, perm = array<i64: 1, 0>} : (tensor<3x4xf32>) -> tensor<4x3xf32>
  %flat = scan.reshape %mm : (tensor<2x4xf32>) -> tensor<8xf32>
  %cols = scan.index %mm {spec = ["...", "1:3"]} : (tensor<2x4xf32>) -> tensor<2x2xf32>
  %elem = scan.index %mm {spec = ["0", "None", "::2"]} : (tensor<2x4xf32>) -> tensor<1x2xf32>
  %row = scan.index %W, %i {spec = ["?"]} : (tensor<3x4xf32>, tensor<i64>) -> tensor<4xf32>
  %cat = scan.concat %mm, %mm {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
  %stk = scan.stack %mm, %mm {axis = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x2x4xf32>
  func.return
}

// CHECK-LABEL: func.func @arrays
// CHECK-NEXT:    %mm = scan.matmul %x, %W : (tensor<2x3xf32>, tensor<3x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %bmm = scan.matmul %B, %W : (tensor<5x2x3xf32>, tensor<3x4xf32>) -> tensor<5x2x4xf32>
// CHECK-NEXT:    %sum = scan.reduce %mm {kind = "sum", axis = array<i64: 1>, keepdims} : (tensor<2x4xf32>) -> tensor<2x1xf32>
// CHECK-NEXT:    %mean = scan.reduce %mm {kind = "mean"} : (tensor<2x4xf32>) -> tensor<f32>
// CHECK-NEXT:    %max = scan.reduce %mm {kind = "max", axis = array<i64: 0>} : (tensor<2x4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %min = scan.reduce %mm {kind = "min"} : (tensor<2x4xf32>) -> tensor<f32>
// CHECK-NEXT:    %WT = scan.transpose %W {perm = array<i64: 1, 0>} : (tensor<3x4xf32>) -> tensor<4x3xf32>
// CHECK-NEXT:    %WT_c = scan.transpose %W {contiguous, perm = array<i64: 1, 0>} : (tensor<3x4xf32>) -> tensor<4x3xf32>
// CHECK-NEXT:    %flat = scan.reshape %mm : (tensor<2x4xf32>) -> tensor<8xf32>
// CHECK-NEXT:    %cols = scan.index %mm {spec = ["...", "1:3"]} : (tensor<2x4xf32>) -> tensor<2x2xf32>
// CHECK-NEXT:    %elem = scan.index %mm {spec = ["0", "None", "::2"]} : (tensor<2x4xf32>) -> tensor<1x2xf32>
// CHECK-NEXT:    %row = scan.index %W, %i {spec = ["?"]} : (tensor<3x4xf32>, tensor<i64>) -> tensor<4xf32>
// CHECK-NEXT:    %cat = scan.concat %mm, %mm {axis = 1 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:    %stk = scan.stack %mm, %mm {axis = 0 : i64} : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x2x4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "arrays"
// CHECK-GENERIC:         %sum = "scan.reduce"(%mm) <{kind = "sum", axis = array<i64: 1>, keepdims}> : (tensor<2x4xf32>) -> tensor<2x1xf32>
// CHECK-GENERIC:         %row = "scan.index"(%W, %i) <{spec = ["?"]}> : (tensor<3x4xf32>, tensor<i64>) -> tensor<4xf32>
// CHECK-GENERIC:         %cat = "scan.concat"(%mm, %mm) <{axis = 1 : i64}> : (tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x8xf32>

// -----

// Random draws from a !scan.rng (a numpy.random.Generator); `steps` draws for many steps at once.
func.func @random(%n: index) {
  %rng = "test.op"() : () -> !scan.rng
  %p = "test.op"() : () -> tensor<4xf32>
  %one = arith.constant 1 : i64
  %u = scan.random %rng() {method = "random", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf64>
  %b = scan.random %rng(%one, %p) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
  %z = scan.random %rng() steps %n {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<?x4xf32>
  func.return
}

// CHECK-LABEL: func.func @random
// CHECK-NEXT:    %rng = "test.op"() : () -> !scan.rng
// CHECK:         %u = scan.random %rng() {method = "random", size = array<i64: 4>} : !scan.rng, () -> tensor<4xf64>
// CHECK-NEXT:    %b = scan.random %rng(%one, %p) {method = "binomial"} : !scan.rng, (i64, tensor<4xf32>) -> tensor<4xi64>
// CHECK-NEXT:    %z = scan.random %rng() steps %n {method = "standard_normal", size = array<i64: 4>} : !scan.rng, () -> tensor<?x4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "random"
// CHECK-GENERIC:         %z = "scan.random"(%rng, %n) <{method = "standard_normal", size = array<i64: 4>, operandSegmentSizes = array<i32: 1, 0, 1>}> : (!scan.rng, index) -> tensor<?x4xf32>

// -----

// keep="last": the value after the last step of a history (the initial value if no step ran).
func.func @last(%hs: tensor<?x4xf32>, %h0: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>) {
  %h_last = scan.last %hs, %h0 : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %y_last = scan.last %hs : (tensor<?x4xf32>) -> tensor<4xf32>
  func.return %h_last, %y_last : tensor<4xf32>, tensor<4xf32>
}

// CHECK-LABEL: func.func @last
// CHECK-NEXT:    %h_last = scan.last %hs, %h0 : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %y_last = scan.last %hs : (tensor<?x4xf32>) -> tensor<4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "last"
// CHECK-GENERIC:         %h_last = "scan.last"(%hs, %h0) : (tensor<?x4xf32>, tensor<4xf32>) -> tensor<4xf32>
