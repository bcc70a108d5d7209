"""Differential fuzzing: random step functions against the plain loop.

tests/fuzz_steps.py generates each case as a real Python module (a random DAG of the supported
operations, helpers, captures, scalars, per-step outputs, keep, go_backwards, ...);
``check_scan`` runs it through the plain loop and through scanopt with every pass on and off.
The default run uses the "fuzz-fast" hypothesis profile; ``python -m pytest -m slow
tests/test_fuzz.py`` runs the "fuzz-slow" profile (conftest.py), over 5,000 cases.
"""

import pytest
from hypothesis import event, given, note, settings

from conftest import generated_module
from fuzz_steps import check_scan, step_programs


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_steps")


def run_case(source, directory):
    note(source)
    with generated_module(source, directory, "_fuzz") as module:
        event(check_scan(**module.arguments()))


@settings(settings.get_profile("fuzz-fast"))
@given(source=step_programs())
def test_fuzz(gen_dir, source):
    run_case(source, gen_dir)


@pytest.mark.slow
@settings(settings.get_profile("fuzz-slow"))
@given(source=step_programs(max_statements=12))
def test_fuzz_many(gen_dir, source):
    run_case(source, gen_dir)
