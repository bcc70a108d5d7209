"""Finding a function's source and AST, with line numbers that point into the user's file."""

from __future__ import annotations

import ast
import inspect
import linecache
import textwrap
from dataclasses import dataclass

from scanopt.errors import ScanError, SourceLocation, UnsupportedSyntax


@dataclass
class FunctionSource:
    """The AST of one ``def`` or ``lambda``, located in its file."""

    node: ast.FunctionDef | ast.Lambda
    filename: str

    def loc(self, node: ast.AST) -> SourceLocation:
        return SourceLocation(self.filename, getattr(node, "lineno", 0),
                              getattr(node, "col_offset", -1) + 1)


_AST_CACHE: dict[object, FunctionSource] = {}


def function_source(fn) -> FunctionSource:
    """Parse ``fn``'s source into an AST whose line and column numbers are those of its file."""
    code = fn.__code__
    # Code objects of identical functions in two files compare equal: the file tells them apart.
    cached = _AST_CACHE.get((code.co_filename, code))
    if cached is not None:
        return cached
    filename = code.co_filename
    node = _lambda_in_file(code) if code.co_name == "<lambda>" else None
    if node is None:
        node = _function_from_its_lines(fn, code)
    result = FunctionSource(node, filename)
    _AST_CACHE[(code.co_filename, code)] = result
    return result


def _lambda_in_file(code) -> ast.Lambda | None:
    """A lambda found in the parsed text of its whole file: wherever it sits (a dict value, a
    tuple in a list spanning several lines), the file parses. None when the file cannot be read
    or parsed (a notebook cell with magics) or does not hold it (edited since import)."""
    text = "".join(linecache.getlines(code.co_filename))
    if not text:
        return None
    cached = _FILE_TREES.get(code.co_filename)
    if cached is None or cached[0] != text:
        try:
            cached = (text, ast.parse(text, code.co_filename))
        except (SyntaxError, ValueError):
            return None
        _FILE_TREES[code.co_filename] = cached
    return _find_lambda(cached[1], code)


_FILE_TREES: dict[str, tuple[str, ast.Module]] = {}


def _function_from_its_lines(fn, code) -> ast.FunctionDef | ast.Lambda:
    """``fn``'s node, parsed from the lines ``inspect`` attributes to it."""
    filename = code.co_filename
    try:
        lines, first_line = inspect.getsourcelines(code)
    except (OSError, TypeError):
        raise _no_source_error(fn, filename) from None
    source = "".join(lines)
    dedented = textwrap.dedent(source)
    indent = _common_indent(source, dedented)
    tree = _parse(dedented, filename, first_line)
    ast.increment_lineno(tree, first_line - 1)
    for node in ast.walk(tree):
        if hasattr(node, "col_offset") and getattr(node, "lineno", None) is not None:
            node.col_offset += indent
            if getattr(node, "end_col_offset", None) is not None:
                node.end_col_offset += indent
    if code.co_name == "<lambda>":
        node = _find_lambda(tree, code)
        if node is None:
            raise ScanError(f"cannot find the lambda defined at {filename}:{code.co_firstlineno}")
        return node
    node = next(
        (n for n in ast.walk(tree)
         if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == code.co_name),
        None,
    )
    if node is None:
        raise ScanError(f"cannot find the definition of {fn.__qualname__!r} in {filename}")
    if isinstance(node, ast.AsyncFunctionDef):
        raise UnsupportedSyntax("an async function cannot be a step function",
                                SourceLocation(filename, node.lineno, node.col_offset + 1))
    return node


def _no_source_error(fn, filename: str) -> UnsupportedSyntax:
    if filename.startswith("<"):
        where = {"<string>": "by exec() or eval()", "<stdin>": "at the interactive prompt"}.get(
            filename, f"in {filename}")
        reason = f"it was defined {where}, which keeps no source code"
    else:
        reason = f"its file {filename} cannot be read"
    return UnsupportedSyntax(
        f"cannot read the source of the function {fn.__qualname__!r}: {reason}",
        hint="scanopt compiles a step function (and the helpers it calls) from its source "
             "code. Define it in a .py file and import it, or in a notebook cell; code generated "
             "at run time can be written to a .py file and imported.")


def _common_indent(source: str, dedented: str) -> int:
    first = next((line for line in source.splitlines() if line.strip()), "")
    first_dedented = next((line for line in dedented.splitlines() if line.strip()), "")
    return len(first) - len(first_dedented)


def _parse(text: str, filename: str, first_line: int) -> ast.Module:
    try:
        return ast.parse(text, filename)
    except SyntaxError:
        # A lambda's source lines may be a fragment of a larger statement
        # (``scan(lambda x: x + 1,``); parse the smallest enclosing statement instead.
        pass
    all_lines = linecache.getlines(filename)
    for end in range(first_line, len(all_lines) + 1):
        chunk = textwrap.dedent("".join(all_lines[first_line - 1 : end]))
        for candidate in (chunk, "(" + chunk.strip().rstrip(",") + ")"):
            try:
                tree = ast.parse(candidate, filename)
            except SyntaxError:
                continue
            if candidate.startswith("("):
                for node in ast.walk(tree):
                    if getattr(node, "lineno", None) == 1 and hasattr(node, "col_offset"):
                        node.col_offset -= 1
            return tree
    raise ScanError(f"cannot parse the source of the function at {filename}:{first_line}")


def _find_lambda(tree: ast.AST, code) -> ast.Lambda | None:
    """The lambda of ``code`` among those of ``tree``: by line, parameters and, when several
    match, the columns of its body."""
    lambdas = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)
               and n.lineno == code.co_firstlineno]
    arg_names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount
                                 + bool(code.co_flags & inspect.CO_VARARGS)]
    matching = [n for n in lambdas if _lambda_arg_names(n) == tuple(arg_names)]
    if len(matching) > 1:
        # Several lambdas with the same arguments on one line: tell them apart by the column
        # of their body, which the code object records.
        # (RESUME and other bookkeeping instructions have empty spans: skip them.)
        positions = [(line, col) for line, end_line, col, end_col in code.co_positions()
                     if line is not None and col is not None
                     and (end_line, end_col) != (line, col)]
        if positions:
            line, col = min(positions)
            matching = [n for n in matching
                        if (n.body.lineno, n.body.col_offset) <= (line, col)
                        <= (n.body.end_lineno, n.body.end_col_offset)] or matching
    return matching[0] if matching else None


def _lambda_arg_names(node: ast.Lambda) -> tuple[str, ...]:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if args.vararg:
        names.append(args.vararg.arg)
    return tuple(names)
