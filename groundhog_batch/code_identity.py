"""What code a call ran, as ``--reuse`` compares it: the whole script (by default), or the function alone.

``--reuse-by script`` (the default) takes an earlier call only if the script's
bytes are the same. ``--reuse-by function`` looks at the function's own code
instead: its definition as Python parses it (so comments, blank lines, and
code elsewhere in the script do not count; a method counts with its whole
class). It cannot see what the function uses from outside its body:
module-level constants and state, helper functions it calls, imported
modules, files it opens itself. Change one of those and ask for
``--reuse-by function``, and old results are taken as if nothing changed.
The arguments, the environment and the data files the sweep reads are
compared either way.
"""

from __future__ import annotations

import ast
import hashlib

REUSE_BY = ("script", "function")


def function_fingerprint(script_text: str, function: str) -> str | None:
    """A hash of ``function``'s definition (``name`` or ``Class.method``: the class), None if not found."""
    try:
        tree = ast.parse(script_text)
    except SyntaxError:
        return None
    wanted = function.split(".")[0]
    for node in tree.body:
        if (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and node.name == wanted
        ):
            return hashlib.sha256(ast.dump(node, include_attributes=False).encode()).hexdigest()
    return None


def code_identity(
    by: str, script_sha256: str | None, script_text: str | None, function: str
) -> str | None:
    """What ``--reuse-by`` compares of a job's code: the script's hash, or its function's fingerprint."""
    if by == "script" or script_text is None:
        return script_sha256
    fingerprint = function_fingerprint(script_text, function)
    return f"function:{fingerprint}" if fingerprint else script_sha256


__all__ = ["REUSE_BY", "code_identity", "function_fingerprint"]
