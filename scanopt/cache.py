"""Where generated modules live on disk.

``SCANOPT_CACHE_DIR`` overrides the location; otherwise it is a private directory (mode 0700) in
the user cache directory (platformdirs). Plain Python: no xDSL here.
"""

from __future__ import annotations

import os

import platformdirs


def cache_root() -> str:
    root = os.environ.get("SCANOPT_CACHE_DIR") or platformdirs.user_cache_dir("scanopt")
    os.makedirs(root, mode=0o700, exist_ok=True)
    return root


def generated_dir() -> str:
    path = os.path.join(cache_root(), "generated")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path
