"""The root of antrea's exception tree.

Every exception class antrea defines derives from :class:`AntreaError`, so a caller can catch
"anything antrea raised on purpose" in one clause. Classes that callers also catch as a builtin
(``ValueError``, ``OSError``, ...) keep that builtin as a second base.
"""

from __future__ import annotations

__all__ = ["AntreaError"]


class AntreaError(Exception):
    """Root of every error antrea raises."""
