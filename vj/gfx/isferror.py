"""ISFError: an ISF file that cannot be loaded (its own module, so the parser and the GLSL translator both raise it)."""

from __future__ import annotations


class ISFError(ValueError):
    """An ISF file that cannot be loaded: names the file, the line where known, and the reason."""

    def __init__(self, file: str, reason: str, line: int | None = None):
        self.file = file
        self.line = line
        self.reason = reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {reason}")
