// RUN: scanopt-opt %s --split-input-file | filecheck %s
// RUN: SCANOPT_ROUNDTRIP
// RUN: SCANOPT_GENERIC_ROUNDTRIP

// The elementwise ops added for NumPy's other common ufuncs (np.sinh ... np.rint, np.arctan2,
// np.hypot, np.logaddexp, np.logical_xor, np.fmax, np.fmin): each op is named after its ufunc
// (scan.xor is np.logical_xor, like scan.and and scan.or), and prints as it was parsed, directly
// and through the generic form.

func.func @unary(%x: tensor<4xf32>, %y: tensor<2x3xf64>) {
  %sinh = scan.sinh %x : (tensor<4xf32>) -> tensor<4xf32>
  %cosh = scan.cosh %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %tan = scan.tan %x : (tensor<4xf32>) -> tensor<4xf32>
  %arcsin = scan.arcsin %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %arccos = scan.arccos %x : (tensor<4xf32>) -> tensor<4xf32>
  %arctan = scan.arctan %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %arcsinh = scan.arcsinh %x : (tensor<4xf32>) -> tensor<4xf32>
  %arccosh = scan.arccosh %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %arctanh = scan.arctanh %x : (tensor<4xf32>) -> tensor<4xf32>
  %exp2 = scan.exp2 %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %expm1 = scan.expm1 %x : (tensor<4xf32>) -> tensor<4xf32>
  %log2 = scan.log2 %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %log10 = scan.log10 %x : (tensor<4xf32>) -> tensor<4xf32>
  %log1p = scan.log1p %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %square = scan.square %x : (tensor<4xf32>) -> tensor<4xf32>
  %reciprocal = scan.reciprocal %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %sign = scan.sign %x : (tensor<4xf32>) -> tensor<4xf32>
  %floor = scan.floor %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %ceil = scan.ceil %x : (tensor<4xf32>) -> tensor<4xf32>
  %trunc = scan.trunc %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
  %rint = scan.rint %x : (tensor<4xf32>) -> tensor<4xf32>
  func.return
}

// CHECK-LABEL: func.func @unary
// CHECK-NEXT:    %sinh = scan.sinh %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %cosh = scan.cosh %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %tan = scan.tan %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %arcsin = scan.arcsin %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %arccos = scan.arccos %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %arctan = scan.arctan %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %arcsinh = scan.arcsinh %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %arccosh = scan.arccosh %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %arctanh = scan.arctanh %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %exp2 = scan.exp2 %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %expm1 = scan.expm1 %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %log2 = scan.log2 %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %log10 = scan.log10 %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %log1p = scan.log1p %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %square = scan.square %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %reciprocal = scan.reciprocal %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %sign = scan.sign %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %floor = scan.floor %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %ceil = scan.ceil %x : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-NEXT:    %trunc = scan.trunc %y : (tensor<2x3xf64>) -> tensor<2x3xf64>
// CHECK-NEXT:    %rint = scan.rint %x : (tensor<4xf32>) -> tensor<4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "unary"
// CHECK-GENERIC:         %sinh = "scan.sinh"(%x) : (tensor<4xf32>) -> tensor<4xf32>
// CHECK-GENERIC:         %rint = "scan.rint"(%x) : (tensor<4xf32>) -> tensor<4xf32>

// -----

// Binary ones broadcast as NumPy does; a Python float (f64) operand stays weakly typed.
func.func @binary(%x: tensor<2x4xf32>, %b: tensor<4xf32>, %m: tensor<2x4xi1>, %n: tensor<4xi1>) {
  %c = arith.constant 2.000000e+00 : f64
  %xor = scan.xor %m, %n : (tensor<2x4xi1>, tensor<4xi1>) -> tensor<2x4xi1>
  %arctan2 = scan.arctan2 %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %hypot = scan.hypot %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
  %logaddexp = scan.logaddexp %c, %x : (f64, tensor<2x4xf32>) -> tensor<2x4xf32>
  %fmax = scan.fmax %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  %fmin = scan.fmin %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
  func.return
}

// CHECK-LABEL: func.func @binary
// CHECK-NEXT:    %c = arith.constant 2.000000e+00 : f64
// CHECK-NEXT:    %xor = scan.xor %m, %n : (tensor<2x4xi1>, tensor<4xi1>) -> tensor<2x4xi1>
// CHECK-NEXT:    %arctan2 = scan.arctan2 %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %hypot = scan.hypot %x, %c : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
// CHECK-NEXT:    %logaddexp = scan.logaddexp %c, %x : (f64, tensor<2x4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %fmax = scan.fmax %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>
// CHECK-NEXT:    %fmin = scan.fmin %x, %b : (tensor<2x4xf32>, tensor<4xf32>) -> tensor<2x4xf32>

// CHECK-GENERIC-LABEL: "func.func"() <{sym_name = "binary"
// CHECK-GENERIC:         %xor = "scan.xor"(%m, %n) : (tensor<2x4xi1>, tensor<4xi1>) -> tensor<2x4xi1>
// CHECK-GENERIC:         %hypot = "scan.hypot"(%x, %c) : (tensor<2x4xf32>, f64) -> tensor<2x4xf32>
