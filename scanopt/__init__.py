"""scanopt: compile NumPy recurrences (scan step functions) into optimised, readable NumPy.

>>> import numpy as np, scanopt
>>> def step(x_t, h, W):
...     return np.tanh(x_t @ W + h)
>>> X, h0, W = np.ones((5, 2, 3)), np.zeros((2, 3)), np.eye(3)
>>> scanopt.scan(step, sequences=X, outputs_info=h0, non_sequences=W).shape
(5, 2, 3)

Importing scanopt does not import xDSL; a compiled loop served from the cache never does.
"""

__version__ = "0.1.0"

from scanopt.api import (StepFunction, cache_info, carry_scan, clear_cache, explain, scan,
                         step, until)
from scanopt.aot import build
from scanopt.errors import (NumbaWarning, ScanError, ScanTypeError, ScanValueError,
                            UnsupportedSyntax)

__all__ = [
    "NumbaWarning",
    "ScanError",
    "ScanTypeError",
    "ScanValueError",
    "StepFunction",
    "UnsupportedSyntax",
    "__version__",
    "build",
    "cache_info",
    "carry_scan",
    "clear_cache",
    "explain",
    "scan",
    "step",
    "until",
]
