"""``numpy.random.Generator`` methods a step may call: ``rng.binomial(1, p)`` and friends."""

from __future__ import annotations

import numpy as np
from xdsl.ir import SSAValue

from scanopt.dialects import scan
from scanopt.dialects.types import aval_of, ir_type
from scanopt.errors import ScanTypeError
from scanopt.frontend.numpy_functions import bind_call
from scanopt.frontend.values import BoundMethod, Const, Scope, describe
from scanopt.signature import AVal

RNG_METHODS = ("random", "uniform", "normal", "standard_normal", "binomial")


class GeneratorCalls:
    """Draws from a generator passed in or captured (``scan.random`` ops, in program order)."""

    def _random(self, method: BoundMethod, args, kwargs, node, scope: Scope) -> SSAValue:
        loc = scope.context.source.loc(node)
        name = method.name
        params = {"random": [("size", None), ("dtype", Const(np.float64))],
                  "standard_normal": [("size", None), ("dtype", Const(np.float64))],
                  "uniform": [("low", Const(0.0)), ("high", Const(1.0)), ("size", None)],
                  "normal": [("loc", Const(0.0)), ("scale", Const(1.0)), ("size", None)],
                  "binomial": ["n", "p", ("size", None)]}[name]
        bound = bind_call(f"Generator.{name}", params, args, kwargs, node, scope)
        size = self._const_ints(bound["size"], node, scope, "size")
        distribution = [self._materialize(bound[p], node, scope)
                        for p in scan.RandomOp.METHODS[name]]
        if "dtype" in bound:
            dtype = self._dtype_arg(bound["dtype"], node, scope)
            if dtype not in (np.float32, np.float64):
                raise ScanTypeError(f"Generator.{name} supports dtype float32 or float64, not "
                                    f"{dtype}", loc)
        else:
            dtype = np.dtype(np.int64) if name == "binomial" else np.dtype(np.float64)
        if size is not None:
            aval = AVal(dtype, tuple(size))
        else:
            shapes = [aval_of(p.type).shape for p in distribution]
            try:
                shape = np.broadcast_shapes(*shapes) if shapes else ()
            except ValueError:
                raise ScanTypeError(f"the parameters of Generator.{name} do not broadcast: "
                                    + ", ".join(describe(p) for p in distribution),
                                    loc) from None
            # With no size and only scalar parameters NumPy returns a Python scalar.
            aval = AVal(np.dtype(float) if dtype.kind == "f" else np.dtype(int), (), weak=True) \
                if shape == () else AVal(dtype, shape)
        return self._emit(scan.RandomOp(name, method.receiver, distribution, size,
                                        ir_type(aval)), node, scope)
