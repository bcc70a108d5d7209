"""Each pass module's docstring ends with a runnable before/after example: run them."""

import doctest
import importlib
import pkgutil

import pytest

import scanopt.transforms

MODULES = sorted(name for _, name, _ in pkgutil.iter_modules(scanopt.transforms.__path__)
                 if name.startswith("scan_"))


@pytest.mark.parametrize("name", MODULES)
def test_pass_docstring_example_runs(name):
    module = importlib.import_module(f"scanopt.transforms.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0, f"{name} has no runnable example"
    assert result.failed == 0
