"""Dashboard layout: a 12-column grid of boxes {id, x, y, w, h}, the format the page's grid (gridstack) uses.

A stored layout lists each widget once, in reading order (top to bottom, left to
right). Layouts saved before positions existed list only {id, w, h} in display
order; those boxes are placed here the way the old page flowed them, so an old
dashboard looks the same and the next save stores real positions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

COLUMNS = 12
MAX_H = 6
MAX_Y = 10_000
WIDE_KINDS = ("line", "log", "table")


class Box(TypedDict):
    id: int
    x: int
    y: int
    w: int
    h: int


def default_size(kind: str) -> tuple[int, int]:
    return (COLUMNS if kind in WIDE_KINDS else 4), 2


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def layout_problem(layout: Any) -> str:
    """Why `layout` is not a valid layout list, or "" when it is."""
    if not isinstance(layout, list):
        return "layout must be a list of {id, x, y, w, h}"
    for item in layout:
        if not isinstance(item, dict) or set(item) - {"id", "x", "y", "w", "h"}:
            return "each layout item is {id, x, y, w, h}"
        if not _int(item.get("id")):
            return "layout item id must be a widget id"
        w, h = item.get("w", 6), item.get("h", 2)
        if not (_int(w) and 1 <= w <= COLUMNS and _int(h) and 1 <= h <= MAX_H):
            return f"layout w must be 1..{COLUMNS} and h 1..{MAX_H}"
        if ("x" in item) != ("y" in item):
            return "a layout item has both x and y, or neither"
        if "x" in item:
            x, y = item["x"], item["y"]
            if not (_int(x) and x >= 0 and x + w <= COLUMNS):
                return f"layout x must be 0..{COLUMNS - 1} and x + w at most {COLUMNS}"
            if not (_int(y) and 0 <= y <= MAX_Y):
                return f"layout y must be 0..{MAX_Y}"
    return ""


class Grid:
    """Occupied cells, for placing boxes that have no position yet."""

    def __init__(self) -> None:
        self.cells: set[tuple[int, int]] = set()

    def take(self, x: int, y: int, w: int, h: int) -> None:
        self.cells.update((cx, cy) for cx in range(x, x + w) for cy in range(y, y + h))

    def free(self, x: int, y: int, w: int, h: int) -> bool:
        return all((cx, cy) not in self.cells for cx in range(x, x + w) for cy in range(y, y + h))

    def first_fit(self, w: int, h: int) -> tuple[int, int]:
        """The first free spot scanning rows top to bottom, left to right (gridstack's autoPosition)."""
        y = 0
        while True:
            for x in range(COLUMNS - w + 1):
                if self.free(x, y, w, h):
                    return x, y
            y += 1


def place(layout: Iterable[Mapping[str, Any]], widgets: Iterable[tuple[int, str]]) -> list[Box]:
    """A box for every widget (id, kind): stored positions kept, the others placed first-fit in order.

    Widgets missing from `layout` come last with their kind's default size; layout
    items of widgets that no longer exist are dropped. The result is in reading order.
    """
    kinds = dict(widgets)
    grid = Grid()
    boxes: list[Box] = []
    unplaced: list[tuple[int, int, int]] = []
    seen: set[int] = set()
    for item in layout:
        wid = item.get("id")
        if not isinstance(wid, int) or wid not in kinds or wid in seen:
            continue
        seen.add(wid)
        w, h = int(item.get("w", 6)), int(item.get("h", 2))
        if "x" in item and "y" in item:
            box = Box(id=wid, x=int(item["x"]), y=int(item["y"]), w=w, h=h)
            grid.take(box["x"], box["y"], w, h)
            boxes.append(box)
        else:
            unplaced.append((wid, w, h))
    unplaced += [(wid, *default_size(kind)) for wid, kind in kinds.items() if wid not in seen]
    for wid, w, h in unplaced:
        x, y = grid.first_fit(w, h)
        grid.take(x, y, w, h)
        boxes.append(Box(id=wid, x=x, y=y, w=w, h=h))
    return reading_order(boxes)


def reading_order(boxes: Iterable[Box]) -> list[Box]:
    return sorted(boxes, key=lambda b: (b["y"], b["x"], b["id"]))


def add_box(boxes: list[Box], widget_id: int, w: int, h: int) -> list[Box]:
    """`boxes` plus a new one at the first spot where it fits."""
    grid = Grid()
    for box in boxes:
        grid.take(box["x"], box["y"], box["w"], box["h"])
    x, y = grid.first_fit(w, h)
    return reading_order([*boxes, Box(id=widget_id, x=x, y=y, w=w, h=h)])
