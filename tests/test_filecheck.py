"""The filecheck tests (``tests/filecheck``, xDSL style), run through lit.

Each ``.mlir`` file pipes scan IR through ``scanopt-opt`` (``python -m scanopt.cli opt``) into
``filecheck``; each ``.py`` file prints the IR the frontend builds for a step function. See
``tests/filecheck/lit.cfg.py`` for the substitutions. Needs the dev dependencies ``lit`` and
``filecheck`` (the Python port of LLVM's FileCheck); skipped without them.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "filecheck")
# lit has no ``python -m lit``; its console script does exactly this. Running it with this
# interpreter makes lit.cfg.py (which uses sys.executable) test the scanopt pytest imports.
RUN_LIT = "import sys; from lit.main import main; sys.argv[0] = 'lit'; main()"


def test_lit_suite():
    for module in ("lit", "filecheck"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"`{module}` is not installed (pip install lit filecheck)")
    result = subprocess.run([sys.executable, "-c", RUN_LIT, "-v", SUITE],
                            check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (
        f"lit -v tests/filecheck failed:\n{result.stdout[-20000:]}\n{result.stderr[-5000:]}")
    assert "Passed" in result.stdout
