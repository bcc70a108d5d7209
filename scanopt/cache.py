"""Where generated modules live on disk, and the disk cache of compiled loops.

``SCANOPT_CACHE_DIR`` overrides the location; otherwise it is a private directory (mode 0700) in
the user cache directory (platformdirs). ``SCANOPT_DEBUG_CACHE=1`` prints one line per lookup to
stderr: hit or miss, and why. Plain Python and NumPy: this module never imports xDSL or
``scanopt.compiler``, so a call served from disk does not either.

The layout under :func:`cache_root`::

    generated/scanopt_generated_<sha256[:24]>.py   generated modules, named by their content
    index/<key>.json                               one entry per key (see below)
    locks/<key>.lock                               held while compiling and publishing <key>

The key (:func:`disk_key`) is the sha256 of the scanopt, xDSL, NumPy and Python versions (and
of scanopt's own source files, so that a changed compiler never serves old modules), the
backend and options, the step function's source and place (file, qualified name, line), its
closure's names and the call's argument signatures. What the step captures (globals, closure
cells, defaults) is not in the key: the entry stores the capture guards, and a load checks them
against the live objects, as the in-memory cache does.

An entry is JSON, version first: the module's file name and sha256, the function to call in it,
the output count, the guards, and a checksum of all that. The module is read once, checked
against the sha256 and executed from those very bytes (no ``__pycache__``), so what runs is
what was hashed. Every file is written to a temporary file and moved into place with
``os.replace``; compile-and-publish holds a lock (filelock) so that two processes do not
compile the same entry at once. An entry that cannot be read, is truncated or does not match its
hashes is a miss with a :class:`CacheWarning`, then recompiled and rewritten: never a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import types
import warnings
from typing import Any, Callable, Iterator

import numpy as np
import platformdirs

from scanopt.compiled import CompiledLoop
from scanopt.frontend.captures import (CapturePlan, code_fingerprint, describe_path, name_of,
                                       source_digest)
from scanopt.signature import AVal, RngVal

_FORMAT = 1  # of the index entries; part of the key
_LOCK_TIMEOUT_S = 600.0
_MODULE_NAME = re.compile(r"scanopt_generated_([0-9a-f]{24})\.py")


class CacheWarning(UserWarning):
    """A disk cache entry could not be used or written; the loop is compiled instead."""


def cache_root() -> str:
    root = os.environ.get("SCANOPT_CACHE_DIR") or platformdirs.user_cache_dir("scanopt")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def generated_dir() -> str:
    return _subdir("generated")


def _subdir(name: str) -> str:
    path = os.path.join(cache_root(), name)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def module_file_name(source: str) -> str:
    """The file name of a generated module: ``scanopt_generated_<sha256[:24]>.py``."""
    return f"scanopt_generated_{_sha256(source.encode('utf-8'))[:24]}.py"


# ---------------------------------------------------------------------------------------------
# The lookup the API makes on an in-memory miss


def compiled_for(fn, call_key: tuple, options: dict,
                 compile: Callable[[], CompiledLoop]) -> tuple[CompiledLoop, bool]:
    """The compiled loop for this call: from disk when an entry matches, else ``compile()``.

    Returns ``(compiled, from_disk)``. A loop from disk has a plan pinned to ``fn``'s live
    objects, so ``compiled.plan.fetch(fn)`` succeeds. A fresh compilation is published for the
    next process, under the compile lock. Errors raised by ``compile`` propagate.
    """
    try:
        key = disk_key(fn, call_key, options)
    except Exception as error:  # a bug here must not break the call
        _warn(f"cannot compute the disk cache key of {_describe_fn(fn)}: {error!r}")
        key = None
    if key is None:
        why = "not cacheable on disk (not a Python function with a source file)"
        compiled = _compile(fn, key, why, compile)
        _log(fn, key, f"miss: {why}; compiled")
        return compiled, False
    if not _root_is_private():
        why = "the cache directory is not private"
        compiled = _compile(fn, key, why, compile)
        _log(fn, key, f"miss: {why}; compiled, not stored")
        return compiled, False

    raw = _read_index(key)
    compiled, why = _load_for(key, fn, raw)
    if compiled is not None:
        _log(fn, key, "hit: disk")
        return compiled, True
    lock = _acquire(key)
    try:
        if lock is not None:
            # Another process may have published this entry while we waited for the lock.
            again = _read_index(key)
            if again is not None and again != raw:
                compiled, why = _load_for(key, fn, again)
                if compiled is not None:
                    _log(fn, key, "hit: disk (published while waiting for the lock)")
                    return compiled, True
        compiled = _compile(fn, key, why, compile)
        outcome = store(key, fn, compiled) if lock is not None else "not stored (no lock)"
    finally:
        if lock is not None:
            lock.release()
    _log(fn, key, f"miss: {why}; compiled, {outcome}")
    return compiled, False


def _compile(fn, key: str | None, why: str, compile: Callable[[], CompiledLoop]) -> CompiledLoop:
    try:
        return compile()
    except BaseException as error:
        _log(fn, key, f"miss: {why}; compiling raised {type(error).__name__}")
        raise


def log_memory_hit(fn) -> None:
    """The ``SCANOPT_DEBUG_CACHE`` line for a call served from the in-memory cache."""
    _log(fn, None, "hit: memory")


def _load_for(key: str, fn, raw: bytes | None) -> tuple[CompiledLoop | None, str]:
    """A loaded entry whose guards pass for ``fn`` (pinned to its live objects), or why not."""
    if raw is None:
        return None, "no entry"
    try:
        compiled, why = _load(key, fn, raw)
    except Exception as error:  # a bug here must not break the call
        _warn(f"cannot load disk cache entry {_index_path(key)}: {error!r}; recompiling")
        return None, "entry unusable"
    if compiled is None:
        return None, why
    mismatch = compiled.plan.first_mismatch(fn)
    if mismatch is not None:
        return None, f"captured `{describe_path(mismatch)}` changed"
    plan = compiled.plan.pinned(fn)
    return CompiledLoop(compiled.run, compiled.source, plan, compiled.n_outputs, compiled.ir,
                        compiled.last_without_init, compiled.remarks), ""


# ---------------------------------------------------------------------------------------------
# The key


def disk_key(fn, call_key: tuple, options: dict) -> str | None:
    """The sha256 naming ``fn``'s entry for this call, or None when it cannot be cached on disk.

    ``options`` holds the backend and compile options (``exact_random``, ``optimize``...).
    Only plain Python functions whose source can be read have a key.
    """
    if not isinstance(fn, types.FunctionType):
        return None
    code = fn.__code__
    fingerprint = code_fingerprint(code)
    if fingerprint is None:
        return None
    try:
        parts = {
            "format": _FORMAT,
            "versions": _versions(),
            "options": {str(k): _encode_key_part(v) for k, v in options.items()},
            "step": fingerprint,
            "freevars": list(code.co_freevars),
            "call": _encode_key_part(call_key),
        }
    except _NotCacheable:
        return None
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return _sha256(text.encode("utf-8"))


_VERSIONS: dict[str, str] | None = None


def _versions() -> dict[str, str]:
    global _VERSIONS
    if _VERSIONS is None:
        import scanopt

        _VERSIONS = {"scanopt": scanopt.__version__, "scanopt_code": _package_digest(),
                     "xdsl": _installed_version("xdsl"), "numpy": np.__version__,
                     "python": sys.implementation.cache_tag or sys.version}
    return _VERSIONS


def _package_digest() -> str:
    """The sha256 of scanopt's own ``.py`` files.

    The version string alone would serve modules generated by an older compiler to anyone who
    changes scanopt without bumping it (every developer, every editable install).
    """
    package = os.path.dirname(os.path.abspath(__file__))
    digest = hashlib.sha256()
    for directory, subdirs, files in os.walk(package):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(directory, name)
            digest.update(os.path.relpath(path, package).encode("utf-8") + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _installed_version(name: str) -> str:
    """The installed version of ``name``, read without importing it.

    The name of the ``<name>-<version>.dist-info`` directory beside the package gives it
    (importing ``importlib.metadata`` alone costs ~15 ms); otherwise ``importlib.metadata``.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "none"
    if spec.origin:
        site = os.path.dirname(os.path.dirname(spec.origin))
        pattern = re.compile(rf"{re.escape(name)}-([^-]+)\.dist-info", re.IGNORECASE)
        with contextlib.suppress(OSError):
            found = [m.group(1) for n in os.listdir(site) if (m := pattern.fullmatch(n))]
            if len(found) == 1:
                return found[0]
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _NotCacheable(Exception):
    """Something in an entry has no stable text form; the message says what."""


def _encode_key_part(value: Any) -> Any:
    """A JSON form of the call key and options: AVal, RngVal, None, bool, int, str, tuples."""
    if isinstance(value, AVal):
        return ["aval", value.dtype.str, list(value.shape), bool(value.weak)]
    if isinstance(value, RngVal):
        return ["rng"]
    if value is None or type(value) in (bool, int, str):
        return value
    if isinstance(value, (tuple, list)):
        return ["seq", [_encode_key_part(v) for v in value]]
    raise _NotCacheable(f"{type(value).__name__} in the call key")


# ---------------------------------------------------------------------------------------------
# Store


def store(key: str, fn, compiled: CompiledLoop) -> str:
    """Publish ``compiled`` as the entry ``key``: the module first, then the index entry.

    Returns what happened, for the log: ``"stored"`` or ``"not stored (why)"``. A capture the
    disk cache cannot name (an arbitrary object) is not stored; a write that fails warns.
    """
    try:
        entry = _entry(key, fn, compiled)
    except _NotCacheable as error:
        return f"not stored ({error})"
    except Exception as error:  # a bug here must not break the call
        _warn(f"cannot serialise disk cache entry {key[:12]}: {error!r}")
        return "not stored (serialisation failed)"
    module_path = os.path.join(generated_dir(), entry["module"])
    data = compiled.source.encode("utf-8")
    try:
        if _read_bytes(module_path) != data:
            _write_atomic(module_path, data)
        _write_atomic(_index_path(key), _dump_entry(entry))
    except OSError as error:
        _warn(f"cannot write disk cache entry {key[:12]}: {error}")
        return "not stored (write failed)"
    return "stored"


def _entry(key: str, fn, compiled: CompiledLoop) -> dict:
    guards = [{"path": _encode_path(path), "expect": _encode_guard(path, expected)}
              for path, expected in compiled.plan.guards.items()]
    return {
        "format": _FORMAT,
        "scanopt": _versions()["scanopt"],
        "key": key,
        "step": f"{fn.__module__}.{fn.__qualname__}",
        "module": module_file_name(compiled.source),
        "sha256": _sha256(compiled.source.encode("utf-8")),
        "function": compiled.run.__name__,
        "n_outputs": int(compiled.n_outputs),
        "last_without_init": bool(compiled.last_without_init),
        "remarks": [str(r) for r in compiled.remarks],
        "guards": guards,
        "inputs": [_encode_path(path) for path in compiled.plan.inputs],
    }


def _dump_entry(entry: dict) -> bytes:
    entry = dict(entry)
    entry.pop("checksum", None)
    entry["checksum"] = _checksum(entry)
    fields = []  # one field a line, one guard a line: readable, and diffs well
    for name, value in entry.items():
        if name == "guards" and value:
            guards = ",\n".join(f"  {json.dumps(g)}" for g in value)
            fields.append(f' "guards": [\n{guards}\n ]')
        else:
            fields.append(f" {json.dumps(name)}: {json.dumps(value)}")
    return ("{\n" + ",\n".join(fields) + "\n}\n").encode("utf-8")


def _checksum(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "checksum"}
    return _sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8"))


def _encode_path(path) -> list:
    out = []
    for kind, key in path:
        if not isinstance(kind, str) or type(key) not in (str, int):
            raise _NotCacheable(f"capture path {path!r} has no JSON form")
        out.append([kind, key])
    return out


_TYPES: dict[str, type] = {"NoneType": type(None), "bool": bool, "int": int, "float": float,
                           "complex": complex, "str": str, "slice": slice,
                           "ellipsis": type(Ellipsis), "tuple": tuple, "list": list}
_TYPE_NAMES = {t: name for name, t in _TYPES.items()}


def _encode_guard(path, expected) -> list:
    if isinstance(expected, AVal):
        return ["aval", expected.dtype.str, list(expected.shape), bool(expected.weak)]
    if isinstance(expected, RngVal):
        return ["rng"]
    kind = expected[0]
    where = f"`{describe_path(path)}`"
    if kind == "const":
        _, t, value = expected
        if isinstance(value, np.dtype):
            if type(value) is not t or np.dtype(value.str) != value or \
                    type(np.dtype(value.str)) is not t:
                raise _NotCacheable(f"{where} is a dtype without a stable text form")
            return ["const", "dtype", value.str]
        if t not in _TYPE_NAMES:
            raise _NotCacheable(f"{where} is a constant of type {t.__name__}")
        return ["const", _TYPE_NAMES[t], _encode_value(value, where)]
    if kind == "len":
        _, t, n = expected
        if t not in (tuple, list):
            raise _NotCacheable(f"{where} is a {t.__name__}")
        return ["len", _TYPE_NAMES[t], int(n)]
    if kind == "code":
        digest = source_digest(expected[1])
        if digest is None:
            raise _NotCacheable(f"the source of helper {where} cannot be read")
        return ["source", digest]
    if kind == "is":
        name = name_of(expected[1])
        if name is None:
            raise _NotCacheable(f"{where} is a {type(expected[1]).__name__} object, which the "
                                "disk cache cannot find again by name")
        return ["named", name]
    raise _NotCacheable(f"{where} has a guard of kind {kind!r}")


def _encode_value(value: Any, where: str) -> list:
    t = type(value)
    if value is None:
        return ["none"]
    if value is Ellipsis:
        return ["ellipsis"]
    if t is bool:
        return ["bool", value]
    if t is int:
        return ["int", str(value)]
    if t is float:
        return ["float", value.hex()]
    if t is complex:
        return ["complex", value.real.hex(), value.imag.hex()]
    if t is str:
        return ["str", value]
    if t is slice:
        return ["slice", [_encode_value(v, where) for v in (value.start, value.stop, value.step)]]
    if t is tuple:
        return ["tuple", [_encode_value(v, where) for v in value]]
    raise _NotCacheable(f"{where} holds a {t.__name__}")


# ---------------------------------------------------------------------------------------------
# Load


def load(key: str, fn) -> CompiledLoop | None:
    """The entry ``key`` with its module imported, or None (a miss; a warning if it is damaged).

    The plan's guards name helpers and modules instead of holding them; checking them against
    ``fn`` (``plan.fetch(fn) is not None``) is left to the caller.
    """
    raw = _read_index(key)
    if raw is None:
        return None
    try:
        return _load(key, fn, raw)[0]
    except Exception as error:
        _warn(f"cannot load disk cache entry {_index_path(key)}: {error!r}; recompiling")
        return None


def _load(key: str, fn, raw: bytes) -> tuple[CompiledLoop | None, str]:
    where = _index_path(key)
    try:
        entry = json.loads(raw.decode("utf-8"))
        if not isinstance(entry, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        _warn(f"disk cache entry {where} is unreadable or truncated ({error}); recompiling")
        return None, "entry unreadable"
    if entry.get("format") != _FORMAT:
        return None, f"entry format {entry.get('format')!r}"
    if entry.get("checksum") != _checksum(entry) or entry.get("key") != key:
        _warn(f"disk cache entry {where} does not match its checksum (modified or damaged); "
              "recompiling")
        return None, "entry checksum mismatch"
    try:
        plan = CapturePlan()
        for guard in entry["guards"]:
            plan.guards[_decode_path(guard["path"])] = _decode_guard(guard["expect"])
        plan.inputs = [_decode_path(path) for path in entry["inputs"]]
        module_name, digest = entry["module"], entry["sha256"]
        match = _MODULE_NAME.fullmatch(module_name)
        if match is None or not digest.startswith(match.group(1)):
            raise ValueError(f"module name {module_name!r} does not match its sha256")
        fn_name, n_outputs = str(entry["function"]), int(entry["n_outputs"])
        last_without_init = bool(entry["last_without_init"])
        remarks = tuple(str(r) for r in entry["remarks"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        _warn(f"disk cache entry {where} is malformed ({error!r}); recompiling")
        return None, "entry malformed"

    path = os.path.join(generated_dir(), module_name)
    data = _read_bytes(path)
    if data is None:
        _warn(f"the module of disk cache entry {where} is missing or unreadable ({path}); "
              "recompiling")
        return None, "module missing"
    if _sha256(data) != digest:
        _warn(f"generated module {path} does not match the sha256 in its cache entry "
              "(modified or damaged); recompiling")
        return None, "module hash mismatch"
    try:
        run = getattr(_exec_module(module_name[:-3], path, data), fn_name)
    except Exception as error:
        _warn(f"cannot import generated module {path}: {error!r}; recompiling")
        return None, "module import failed"
    return CompiledLoop(run, data.decode("utf-8"), plan, n_outputs, "", last_without_init,
                        remarks), ""


def _exec_module(module_name: str, path: str, data: bytes) -> types.ModuleType:
    """Import the verified bytes of a generated module as the module at ``path``.

    Executed from ``data`` itself (not re-read, no ``.pyc``), so what runs is what was hashed;
    the code's file name is the real file, so tracebacks and pdb show it.
    """
    code = compile(data, path, "exec", dont_inherit=True)
    module = types.ModuleType(module_name)
    module.__file__ = path
    sys.modules[module_name] = module
    exec(code, module.__dict__)
    return module


def _decode_path(path) -> tuple:
    return tuple((str(kind), key if type(key) is int else str(key)) for kind, key in path)


def _decode_guard(data: list) -> Any:
    kind = data[0]
    if kind == "aval":
        return AVal(np.dtype(data[1]), tuple(None if d is None else int(d) for d in data[2]),
                    bool(data[3]))
    if kind == "rng":
        return RngVal()
    if kind == "const":
        if data[1] == "dtype":
            value = np.dtype(data[2])
            return ("const", type(value), value)
        return ("const", _TYPES[data[1]], _decode_value(data[2]))
    if kind == "len":
        return ("len", _TYPES[data[1]], int(data[2]))
    if kind in ("source", "named"):
        return (kind, str(data[1]))
    raise ValueError(f"unknown guard kind {kind!r}")


def _decode_value(data: list) -> Any:
    tag = data[0]
    if tag == "none":
        return None
    if tag == "ellipsis":
        return Ellipsis
    if tag == "bool":
        return bool(data[1])
    if tag == "int":
        return int(data[1])
    if tag == "float":
        return float.fromhex(data[1])
    if tag == "complex":
        return complex(float.fromhex(data[1]), float.fromhex(data[2]))
    if tag == "str":
        return str(data[1])
    if tag == "slice":
        return slice(*(_decode_value(v) for v in data[1]))
    if tag == "tuple":
        return tuple(_decode_value(v) for v in data[1])
    raise ValueError(f"unknown constant tag {tag!r}")


# ---------------------------------------------------------------------------------------------
# Files, lock, checks, log


@contextlib.contextmanager
def compile_lock(key: str, timeout: float = _LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``<root>/locks/<key>.lock`` (filelock) while compiling and publishing ``key``.

    Raises ``filelock.Timeout`` after ``timeout`` seconds, ``OSError`` if the lock file cannot
    be created.
    """
    lock = _lock_for(key, timeout)
    with lock:
        yield


def _lock_for(key: str, timeout: float):
    import filelock  # only a compilation needs it

    return filelock.FileLock(os.path.join(_subdir("locks"), f"{key}.lock"), timeout=timeout)


def _acquire(key: str):
    """The acquired compile lock for ``key``, or None (with a warning) if it cannot be had."""
    import filelock

    lock = _lock_for(key, _LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except filelock.Timeout:
        _warn(f"waited {_LOCK_TIMEOUT_S:.0f} s for the compile lock {lock.lock_file}; "
              "compiling without publishing")
        return None
    except OSError as error:
        _warn(f"cannot take the compile lock {lock.lock_file}: {error}; compiling without "
              "publishing")
        return None
    return lock


def _index_path(key: str) -> str:
    return os.path.join(_subdir("index"), f"{key}.json")


def _read_index(key: str) -> bytes | None:
    try:
        with open(_index_path(key), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        _warn(f"cannot read disk cache entry {_index_path(key)}: {error}; recompiling")
        return None


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a private temporary file beside ``path``, then ``os.replace`` it there."""
    directory, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_UNSAFE_ROOTS: set[str] = set()


def _root_is_private() -> bool:
    """The cache root is ours and only we can write to it (it holds code that gets imported)."""
    try:
        root = cache_root()
        st = os.stat(root)
    except OSError as error:
        _warn(f"cannot use the cache directory: {error}")
        return False
    if root in _UNSAFE_ROOTS:
        return False
    if os.name != "posix":  # mode bits mean nothing there; the user profile is private
        return True
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        _UNSAFE_ROOTS.add(root)
        _warn(f"the scanopt cache directory {root} is writable by other users or not owned by "
              "you, so the disk cache is off; make it private (chmod 700) or set "
              "SCANOPT_CACHE_DIR")
        return False
    return True


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _warn(message: str) -> None:
    """Warn at the user's line that called into scanopt."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame.f_back is not None and \
            os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"scanopt cache: {message}", CacheWarning, stacklevel=level)


def _describe_fn(fn) -> str:
    code = getattr(fn, "__code__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    if code is None:
        return name
    return f"{name} ({os.path.basename(code.co_filename)}:{code.co_firstlineno})"


def _log(fn, key: str | None, message: str) -> None:
    if os.environ.get("SCANOPT_DEBUG_CACHE") == "1":
        entry = f" [{key[:12]}]" if key else ""
        print(f"scanopt cache: {_describe_fn(fn)}{entry} {message}", file=sys.stderr, flush=True)
