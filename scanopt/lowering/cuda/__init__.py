"""CUDA C for the CuPy backend: step kernels generated from ``fused.region`` ops (``kernels``),
NVRTC compilation without a GPU (``nvrtc``), and a CPU emulation that runs the same kernel text
compiled by g++ (``emulate``)."""
