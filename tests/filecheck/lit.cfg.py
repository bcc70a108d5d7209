"""lit configuration of scanopt's filecheck tests (xDSL style).

Run with ``lit -v tests/filecheck`` (or ``pytest tests/test_filecheck.py``). Substitutions in
RUN lines:

- ``scanopt-opt``: ``python -m scanopt.cli opt`` (parse scan IR, run ``-p`` passes, print).
- ``filecheck``: the Python port of LLVM's FileCheck (PyPI ``filecheck``).
- ``python``: the interpreter running lit, so the frontend tests see the same scanopt.
- ``SCANOPT_ROUNDTRIP``: the file printed in the generic format, parsed back and printed in the
  custom one, checked against the file's CHECK lines (``// RUN: SCANOPT_ROUNDTRIP``).
- ``SCANOPT_GENERIC_ROUNDTRIP``: the file printed in the generic format, checked against its
  CHECK-GENERIC lines.
"""
# ruff: noqa: F821 (lit defines `config`)

import os
import shlex
import sys
import tempfile

import lit.formats

config.name = "scanopt"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir", ".py"]
config.excludes = ["lit.cfg.py", "__pycache__", "Output"]
config.test_source_root = os.path.dirname(__file__)
# lit writes an Output/ folder per test directory: keep it out of the source tree.
config.test_exec_root = os.path.join(tempfile.gettempdir(), f"scanopt-lit-{os.getuid()}"
                                     if hasattr(os, "getuid") else "scanopt-lit")

repo_root = os.path.dirname(os.path.dirname(config.test_source_root))
python = shlex.quote(sys.executable)
config.environment["PYTHONPATH"] = os.pathsep.join(
    p for p in (repo_root, os.environ.get("PYTHONPATH", "")) if p)
for name in ("HOME", "SCANOPT_CACHE_DIR", "XDG_CACHE_HOME"):
    if name in os.environ:  # the generated-module cache directory
        config.environment[name] = os.environ[name]

# Applied in order, once each: the round-trip macros first, since they expand to the others.
config.substitutions.append((
    "SCANOPT_ROUNDTRIP",
    ("scanopt-opt %s --split-input-file --print-op-generic"
     " | scanopt-opt --split-input-file | filecheck %s")))
config.substitutions.append((
    "SCANOPT_GENERIC_ROUNDTRIP",
    ("scanopt-opt %s --split-input-file --print-op-generic"
     " | filecheck %s --check-prefix=CHECK-GENERIC")))
config.substitutions.append((r"(?<![\w./-])python(?![\w.-])", python))
config.substitutions.append(("scanopt-opt", f"{python} -m scanopt.cli opt"))
config.substitutions.append(("filecheck", f"{python} -m filecheck"))
