"""Names used in annotations only, without importing typing at run time (3 ms of every command's start).

Every module here has ``from __future__ import annotations``: its annotations stay strings, so at run time
these names need only exist. A type checker reads the ``TYPE_CHECKING`` branch and sees typing's own.
``tests/test_fixed_costs.py`` checks that validate and a local submit import no typing.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO, ClassVar, TextIO
else:
    Any = BinaryIO = ClassVar = TextIO = object

__all__ = ["TYPE_CHECKING", "Any", "BinaryIO", "ClassVar", "TextIO"]
