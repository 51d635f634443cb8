"""The grid layout: boxes kept where they were put, the rest placed at the first free spot."""

from __future__ import annotations

from dashboards import layout


def test_stored_positions_are_kept_and_listed_in_reading_order() -> None:
    stored = [{"id": 2, "x": 6, "y": 0, "w": 6, "h": 2}, {"id": 1, "x": 0, "y": 0, "w": 6, "h": 2}]
    boxes = layout.place(stored, [(1, "stat"), (2, "stat")])
    assert [(b["id"], b["x"], b["y"]) for b in boxes] == [(1, 0, 0), (2, 6, 0)]


def test_widgets_without_a_position_fill_the_first_gap_that_fits() -> None:
    stored = [{"id": 1, "x": 0, "y": 0, "w": 4, "h": 2}, {"id": 2, "x": 8, "y": 0, "w": 4, "h": 2}]
    boxes = {b["id"]: b for b in layout.place(stored, [(1, "stat"), (2, "stat"), (3, "gauge"), (4, "line")])}
    assert (boxes[3]["x"], boxes[3]["y"], boxes[3]["w"]) == (4, 0, 4)  # the gap between 1 and 2
    assert (boxes[4]["x"], boxes[4]["y"], boxes[4]["w"]) == (0, 2, 12)  # a line chart is full width


def test_unknown_and_repeated_items_are_dropped() -> None:
    stored = [{"id": 9, "x": 0, "y": 0, "w": 12, "h": 6}, {"id": 1, "w": 6}, {"id": 1, "w": 12}]
    assert layout.place(stored, [(1, "line")]) == [{"id": 1, "x": 0, "y": 0, "w": 6, "h": 2}]


def test_add_box_takes_the_first_free_spot() -> None:
    boxes = layout.place([{"id": 1, "x": 0, "y": 0, "w": 12, "h": 1}], [(1, "line")])
    assert layout.add_box(boxes, 2, 6, 2)[-1] == {"id": 2, "x": 0, "y": 1, "w": 6, "h": 2}


def test_layout_problems_say_what_is_wrong() -> None:
    assert layout.layout_problem([{"id": 1, "x": 0, "y": 0, "w": 12, "h": 6}]) == ""
    assert layout.layout_problem([{"id": 1, "w": 4}]) == ""  # without a position: placed when shown
    assert "list" in layout.layout_problem({"id": 1})
    assert "{id, x, y, w, h}" in layout.layout_problem([{"id": 1, "z": 1}])
    assert "widget id" in layout.layout_problem([{"id": True}])
    assert "h 1..6" in layout.layout_problem([{"id": 1, "h": 7}])
    assert "x + w" in layout.layout_problem([{"id": 1, "x": 9, "y": 0, "w": 4}])
    assert "both x and y" in layout.layout_problem([{"id": 1, "y": 0}])
    assert "y must be" in layout.layout_problem([{"id": 1, "x": 0, "y": 10_001}])
