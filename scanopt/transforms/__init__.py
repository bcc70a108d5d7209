"""Passes on scan IR, and the default pipeline.

Passes are registered by name in a lazy registry (``get_all_passes``), xDSL style, so importing
scanopt never imports them.
"""

from __future__ import annotations

from collections.abc import Callable

PIPELINE = ("canonicalize", "cse", "scan-licm", "scan-fuse-matmul", "cse", "scan-fuse-slices",
            "scan-licm", "scan-push-out-seq", "scan-sink-outputs", "scan-save-mem", "cse",
            "dce")
# Random draws made differently from the plain loop: only without exact_random. Runs last, so
# nothing moves work on pre-drawn numbers out of the chunked loop.
FAST_RANDOM = ("scan-fast-random", "cse", "dce")
# With exact_random=True results must be bit-for-bit the plain loop's: only rewrites that compute
# every number exactly as the step does (no regrouped sums, no batched or merged GEMMs, whose
# BLAS blocking may round differently; no contiguous copies that change the GEMM's kernel).
EXACT_PIPELINE = ("canonicalize", "cse", "scan-licm{exact}", "scan-fuse-slices",
                  "scan-push-out-seq{exact}", "scan-sink-outputs{exact}", "scan-save-mem", "cse",
                  "dce")
# Backends that run a step's fused regions as kernels (CuPy) append this to either pipeline.
FUSE_REGIONS = ("scan-fuse-regions",)
# The NumPy backend's rewrites of a step's elementwise work, measured on NumPy: fewer passes
# over each step's arrays. They change rounding, so they are not in EXACT_PIPELINE. They run
# once scan-fuse-slices has made the gate block, and before scan-licm and scan-push-out-seq,
# which then compute the scaled weights once (the second scan-fuse-slices merges the gates'
# tanh with the sigmoids' once they read the same block).
NUMPY_REWRITES = ("dce", "scan-sigmoid-tanh", "scan-fold-scale", "dce", "scan-fuse-slices",
                  "scan-lerp")
_AFTER_SLICES = PIPELINE.index("scan-fuse-slices") + 1
NUMPY_PIPELINE = PIPELINE[:_AFTER_SLICES] + NUMPY_REWRITES + PIPELINE[_AFTER_SLICES:]


def get_all_passes() -> dict[str, Callable[[], type]]:
    """Pass name → a function returning the pass class."""

    def _cse():
        from xdsl.transforms.common_subexpression_elimination import (
            CommonSubexpressionElimination,
        )

        return CommonSubexpressionElimination

    def _dce():
        from xdsl.transforms.dead_code_elimination import DeadCodeElimination

        return DeadCodeElimination

    def _canonicalize():
        from xdsl.transforms.canonicalize import CanonicalizePass

        return CanonicalizePass

    def _scan(module: str, cls: str):
        def get():
            import importlib

            return getattr(importlib.import_module(f"scanopt.transforms.{module}"), cls)

        return get

    def _convert_scan_to_upstream():
        from scanopt.lowering.scan_to_upstream import ConvertScanToUpstreamPass

        return ConvertScanToUpstreamPass

    return {
        "cse": _cse,
        "dce": _dce,
        "canonicalize": _canonicalize,
        "scan-licm": _scan("scan_licm", "ScanLICMPass"),
        "scan-fuse-matmul": _scan("scan_fuse_matmul", "ScanFuseMatmulPass"),
        "scan-fuse-slices": _scan("scan_fuse_slices", "ScanFuseSlicesPass"),
        "scan-push-out-seq": _scan("scan_push_out_seq", "ScanPushOutSeqPass"),
        "scan-save-mem": _scan("scan_save_mem", "ScanSaveMemPass"),
        "scan-sink-outputs": _scan("scan_sink_outputs", "ScanSinkOutputsPass"),
        "scan-fast-random": _scan("scan_fast_random", "ScanFastRandomPass"),
        "scan-fuse-regions": _scan("scan_fuse_regions", "ScanFuseRegionsPass"),
        "scan-sigmoid-tanh": _scan("scan_sigmoid_tanh", "ScanSigmoidTanhPass"),
        "scan-fold-scale": _scan("scan_fold_scale", "ScanFoldScalePass"),
        "scan-lerp": _scan("scan_lerp", "ScanLerpPass"),
        "convert-scan-to-upstream": _convert_scan_to_upstream,
    }

def run_pipeline(module, ctx, passes=PIPELINE,
                 callback: Callable[[str, str], None] | None = None) -> None:
    """Apply ``passes`` in order; ``callback(pass_name, ir_text)`` after each one."""
    registry = get_all_passes()
    for name in passes:
        base, options = parse_pass(name)
        registry[base]()(**options).apply(ctx, module)
        module.verify()
        if callback is not None:
            from scanopt.dialects.ir import print_ir

            callback(name, print_ir(module))


def parse_pass(spec: str) -> tuple[str, dict[str, object]]:
    """``"scan-licm{exact}"`` → ``("scan-licm", {"exact": True})``; ``key=value`` options too."""
    name, _, rest = spec.partition("{")
    options: dict[str, object] = {}
    for item in rest.rstrip("}").split():
        key, _, value = item.partition("=")
        options[key.replace("-", "_")] = True if not value else \
            {"true": True, "false": False}.get(value.lower(), value)
    return name, options
