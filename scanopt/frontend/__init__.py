"""Reads a step function's Python source into ``scan`` dialect IR.

``signature`` and ``captures`` are plain Python (no xDSL), so the cached-call path can use them;
``builder`` holds the AST walker and imports xDSL.
"""
