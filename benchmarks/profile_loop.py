"""Where a generated loop spends its time: each statement of the step loop, timed.

Takes a workload of ``bench_scan.py``, generates scanopt's NumPy module for it (the module
``scanopt.scan`` runs), wraps every statement inside the time loop between two clock reads,
runs the module many times and prints each statement's share of the loop: the recurrent
matmuls (BLAS), the elementwise passes (ufuncs) and the Python glue between them. The clock
reads cost about 0.1 µs per statement; the uninstrumented module's time is printed alongside.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/profile_loop.py lstm
    python benchmarks/profile_loop.py gru elman --calls 300
"""

import argparse
import ast
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scan as bench  # noqa: E402

WORKLOADS = {
    "lstm": ("LSTM T100 B16 H128", bench.lstm_step, lambda: bench.lstm_data(100, 16, 128, 128),
             lambda d: dict(sequences=d["X"], outputs_info=[d["h0"], d["c0"]],
                            non_sequences=d["params"])),
    "lstm-large": ("LSTM T50 B64 I256 H512", bench.lstm_step,
                   lambda: bench.lstm_data(50, 64, 256, 512),
                   lambda d: dict(sequences=d["X"], outputs_info=[d["h0"], d["c0"]],
                                  non_sequences=d["params"])),
    "gru": ("GRU T100 B16 H128", bench.gru_step, lambda: bench.gru_data(100, 16, 128, 128),
            lambda d: dict(sequences=d["X"], outputs_info=d["h0"], non_sequences=d["params"])),
    "elman": ("Elman T100 B16 H128", bench.elman_step, lambda: bench.elman_data(100, 16, 128, 128),
              lambda d: dict(sequences=d["X"], outputs_info=d["h0"],
                             non_sequences=[d["W"], d["U"], d["b"]])),
}

CLOCK = "_profile_clock"
SPENT = "_profile_spent"


def instrument(source: str, entry: str) -> tuple[str, list[str]]:
    """The module with each statement of ``entry``'s time loop timed into ``SPENT[k]``, and
    the text of statement ``k``."""
    tree = ast.parse(source)
    function = next(node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == entry)
    loop = next(node for node in ast.walk(function) if isinstance(node, ast.For))
    texts, body = [], []
    for statement in loop.body:
        k = len(texts)
        texts.append(ast.get_source_segment(source, statement))
        start = ast.parse(f"_profile_start = {CLOCK}()").body[0]
        stop = ast.parse(f"{SPENT}[{k}] += {CLOCK}() - _profile_start").body[0]
        body += [start, statement, stop]
    loop.body = body
    return ast.unparse(ast.fix_missing_locations(tree)), texts


def kind_of(text: str) -> str:
    if text.startswith("np.matmul") or "@" in text:
        return "BLAS"
    if text.startswith("np."):
        return "ufunc"
    return "Python"


def profile(name: str, calls: int) -> None:
    import scanopt

    title, step, data, arguments = WORKLOADS[name]
    args = arguments(data())
    source = scanopt.step(step).source(**args)
    entry = step.__name__
    plain: dict = {}
    exec(compile(source, f"<scanopt {entry}>", "exec"), plain)
    instrumented_source, texts = instrument(source, entry)
    timed = {CLOCK: time.perf_counter, SPENT: [0.0] * len(texts)}
    exec(compile(instrumented_source, f"<profiled {entry}>", "exec"), timed)

    # The generated function's arguments, as scanopt.scan passes them (nothing is captured).
    inits = args["outputs_info"] if isinstance(args["outputs_info"], list) \
        else [args["outputs_info"]]
    n_steps = len(args["sequences"])
    call_args = (args["sequences"], *inits, *args["non_sequences"], n_steps)

    def median_ms(fn, before_timing=lambda: None) -> float:
        for _ in range(10):
            fn(*call_args)
        before_timing()
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            fn(*call_args)
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1e3

    loop_ms = median_ms(plain[entry])
    spent = timed[SPENT]
    instrumented_ms = median_ms(timed[entry], lambda: spent.__setitem__(slice(None),
                                                                        [0.0] * len(spent)))
    per_step_us = [s / (calls * n_steps) * 1e6 for s in spent]
    total_us = sum(per_step_us)

    print(f"\n{title}: generated loop {loop_ms:.3f} ms per call "
          f"({loop_ms / n_steps * 1e3:.1f} µs per step; instrumented {instrumented_ms:.3f} ms)")
    print(f"{'µs/step':>8} {'share':>6}  kind    statement")
    by_kind: dict[str, float] = {}
    for text, us in zip(texts, per_step_us):
        kind = kind_of(text)
        by_kind[kind] = by_kind.get(kind, 0.0) + us
        print(f"{us:8.2f} {us / total_us:6.1%}  {kind:6s}  {text}")
    print("  by kind: " + ", ".join(f"{kind} {us:.1f} µs ({us / total_us:.0%})"
                                   for kind, us in sorted(by_kind.items(),
                                                          key=lambda item: -item[1])))
    outside = loop_ms / n_steps * 1e3 - total_us
    print(f"  outside the timed statements (the work before the loop, such as the pushed-out "
          f"GEMM, and the loop's glue): {outside:.1f} µs per step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workloads", nargs="*", default=["lstm", "gru", "elman"],
                        choices=sorted(WORKLOADS))
    parser.add_argument("--calls", type=int, default=200, help="timed calls (default 200)")
    options = parser.parse_args()
    bench.print_machine_info(bench.machine_info())
    for name in options.workloads:
        profile(name, options.calls)


if __name__ == "__main__":
    main()
