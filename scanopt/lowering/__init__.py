"""Lowerings of optimised scan IR: NumPy source (and later CuPy and upstream MLIR)."""
