"""Pages of a list, `?page=1` based; one row more than a page is read to know if there is a
next page, so no count query is needed (the services page by offset and limit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from django.http import HttpRequest

from oneapi.api import ITEMS_PER_PAGE, MAX_PAGE

T = TypeVar("T")


@dataclass(frozen=True)
class Pager:
    number: int
    size: int = ITEMS_PER_PAGE

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def fetch(self) -> int:
        """How many rows to ask for."""
        return self.size + 1

    def page(self, rows: Sequence[T]) -> Page[T]:
        """`rows` read from `offset` with `fetch` as the limit."""
        return Page(list(rows[: self.size]), self.number, len(rows) > self.size)

    def slice(self, rows: Sequence[T]) -> Page[T]:
        """A page of a whole list (for services that return every match)."""
        return self.page(rows[self.offset : self.offset + self.fetch])


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def previous(self) -> int:
        return self.number - 1

    @property
    def next(self) -> int:
        return self.number + 1


def pager(request: HttpRequest, size: int = ITEMS_PER_PAGE) -> Pager:
    try:
        number = int(request.GET.get("page", "1"))
    except ValueError:
        number = 1
    return Pager(min(max(number, 1), MAX_PAGE), size)
