"""`async with` for anything that has an `aclose`: one definition instead of one per class."""

from __future__ import annotations

from typing import Self


class AsyncClosing:
    """Mixin: `async with thing:` returns the thing and calls `await thing.aclose()` on the way out."""

    __slots__ = ()

    async def aclose(self) -> None:
        """Release what the object holds. Subclasses override this."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
