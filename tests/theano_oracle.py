"""A plain loop with Theano's scan semantics: taps, until, maps. The oracle of tests/test_theano.py.

Written from PyTensor's ``pytensor/scan/basic.py`` (Theano's successor, same rules), step by
step and independently of scanopt: each tap of a sequence is its own slice of the input,
reversed for ``go_backwards``, and all are cut to the number of steps; each output keeps the
values its taps read in a list.
"""

from __future__ import annotations

import copy

import numpy as np

import scanopt


def _as_list(x):
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _tap_slices(sequences, go_backwards):
    """PyTensor's cut: for taps with mintap/maxtap stretched to include 0, tap k reads
    ``u[k - mintap : len(u) - (maxtap - k)]``, reversed when going backwards."""
    slices = []
    for entry in _as_list(sequences):
        if isinstance(entry, dict):
            u, taps = np.asarray(entry["input"]), entry.get("taps")
            taps = [0] if taps is None else _as_list(taps)
        else:
            u, taps = np.asarray(entry), [0]
        maxtap, mintap = max(max(taps), 0), min(min(taps), 0)
        for k in taps:
            start = k - mintap
            cut = u[start:] if k == maxtap else u[start:-(maxtap - k)]
            slices.append(cut[::-1] if go_backwards else cut)
    return slices


def _split_until(out):
    if isinstance(out, scanopt.until):
        return [], out.condition
    values = list(out) if isinstance(out, (tuple, list)) else [out]
    if values and isinstance(values[-1], scanopt.until):
        condition = values.pop().condition
        if len(values) == 1 and isinstance(values[0], (tuple, list)):
            values = list(values[0])
        return values, condition
    return values, None


def theano_scan(fn, sequences=None, outputs_info=None, non_sequences=None, n_steps=None,
                go_backwards=False):
    """What ``theano.scan`` returns (without the updates): one array or a list of arrays."""
    slices = _tap_slices(sequences, go_backwards)
    if n_steps is None:
        n_steps = min(len(s) for s in slices)
    assert all(len(s) >= n_steps for s in slices), "a sequence is too short for n_steps"
    slices = [s[:n_steps] for s in slices]
    entries = _as_list(outputs_info)
    taps, past = [], []  # per output: its taps and the values they can read, oldest first
    for entry in entries:
        if entry is None:
            taps.append(None)
            past.append(None)
            continue
        if not isinstance(entry, dict):
            entry = {"initial": entry, "taps": [-1]}
        initial, output_taps = np.asarray(entry["initial"]), _as_list(entry.get("taps", [-1]))
        taps.append(output_taps)
        past.append([initial] if output_taps == [-1] else list(initial[:-min(output_taps)]))
    params = _as_list(non_sequences)
    history = None
    for t in range(n_steps):
        args = [s[t] for s in slices]
        for output_taps, values in zip(taps, past):
            if output_taps is not None:
                args.extend(values[len(values) + k] for k in output_taps)
        out, condition = _split_until(fn(*args, *params))
        if history is None:
            history = [[] for _ in out]
            if entries and len(out) != len(entries):
                raise ValueError("the step returns another number of values than outputs_info")
        for k, value in enumerate(out):
            history[k].append(value)
            if k < len(past) and past[k] is not None:
                past[k] = [*past[k][1:], np.asarray(value)]  # fed back as an array
        if condition is not None and condition:
            break
    if history is None:  # zero steps: the shapes come from one call on stand-in slices
        probe_args = [np.zeros(s.shape[1:], s.dtype) for s in slices]
        for output_taps, values in zip(taps, past):
            if output_taps is not None:
                probe_args.extend(values[len(values) + k] for k in output_taps)
        probe_params = [copy.deepcopy(p) if isinstance(p, np.random.Generator) else p
                        for p in params]
        with np.errstate(all="ignore"):
            out, _ = _split_until(fn(*probe_args, *probe_params))
        result = [np.empty((0, *np.shape(v)), np.asarray(v).dtype) for v in out]
    else:
        result = [np.stack(h) for h in history]
    return result[0] if len(result) == 1 else result
