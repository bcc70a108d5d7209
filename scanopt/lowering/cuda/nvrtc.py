"""Compile CUDA C to PTX with NVRTC, on a machine with or without a GPU.

NVRTC is a library: PyPI's ``nvidia-cuda-nvrtc`` ships it and ``cuda-bindings`` calls it
(``pip install 'scanopt[cuda]'``); neither needs a GPU or a driver. The CuPy backend's tests
compile every generated kernel this way for ``compute_80`` (A100) and ``compute_90`` (H100),
so a kernel that would not compile on the GPU fails here, with NVRTC's error log.
"""

from __future__ import annotations

ARCHITECTURES = ("compute_80", "compute_90")
OPTIONS = ("--std=c++17",)


class NVRTCError(Exception):
    """The source did not compile: the message holds NVRTC's log."""


def available() -> str | None:
    """None when NVRTC can be used here, else why not (what to install)."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as error:
        return (f"cuda-bindings is not installed ({error}); pip install 'scanopt[cuda]' "
                "(cuda-bindings and nvidia-cuda-nvrtc)")
    try:
        result, *_ = nvrtc.nvrtcVersion()
    except Exception as error:  # noqa: BLE001 (the library itself failed to load)
        return (f"NVRTC could not be loaded ({error}); pip install 'scanopt[cuda]' "
                "(nvidia-cuda-nvrtc)")
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return f"NVRTC does not work here ({result})"
    return None


def compile_ptx(source: str, name: str = "scanopt_kernels.cu", arch: str = "compute_90",
                options: tuple[str, ...] = OPTIONS) -> str:
    """PTX for ``source``; raises NVRTCError with the compiler's log when it does not compile."""
    from cuda.bindings import nvrtc

    ok = nvrtc.nvrtcResult.NVRTC_SUCCESS
    result, program = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    if result != ok:
        raise NVRTCError(f"nvrtcCreateProgram failed: {result}")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), *(o.encode() for o in options)]
        (compiled,) = nvrtc.nvrtcCompileProgram(program, len(opts), opts)
        _, size = nvrtc.nvrtcGetProgramLogSize(program)
        log = b" " * size
        nvrtc.nvrtcGetProgramLog(program, log)
        if compiled != ok:
            raise NVRTCError(f"{name} does not compile for {arch}:\n"
                             f"{log.decode(errors='replace').rstrip(chr(0)).strip()}")
        _, size = nvrtc.nvrtcGetPTXSize(program)
        ptx = b" " * size
        nvrtc.nvrtcGetPTX(program, ptx)
        return ptx.decode(errors="replace").rstrip("\0")
    finally:
        nvrtc.nvrtcDestroyProgram(program)
