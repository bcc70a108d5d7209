"""Reads a step function's Python source into ``scan`` dialect IR.

``captures`` is plain Python (no xDSL), so the cached-call path can use it;
``builder`` holds the AST walker and imports xDSL.
"""
