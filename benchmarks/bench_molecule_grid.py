"""Benchmark scrolling and sorting the Molecules grid over many rows, against a plain Qt table
of the same text in the same process.

    QT_QPA_PLATFORM=offscreen python benchmarks/bench_molecule_grid.py LIBRARY [--rows N] [--steps S]

LIBRARY: a SMILES/CSV file (e.g. a MOSES part; never committed). Its first N rows (default
100,000) are parsed and described on all cores (not timed) and put in the workspace's grid, as
an import does. Then, timed:
- scrolling: S wheel steps (3 rows each) and S page steps through the grid, each followed by a
  synchronous repaint of the table's viewport (``repaint()``: layout, data(), depictions drawn
  for the rows coming into view, painting). Median and 95th percentile per step, against the
  same steps on a ``QTableView`` over a ``QStandardItemModel`` holding the same rows' text and
  no structures (what Qt gives for free). 16 ms a frame is 60 frames a second.
- sorting by molecular weight: the grid's proxy sort against the plain model's ``sort``.
Prints `<what>: <ratio>x <baseline> (<ours> vs <baseline>)`."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("library")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args(argv)

    from PySide6.QtCore import Qt
    from PySide6.QtGui import QStandardItem, QStandardItemModel
    from PySide6.QtWidgets import QApplication, QTableView
    from rdkit import Chem

    from healthfm_desktop.controllers.molecules import MoleculeRow, MoleculesController
    from healthfm_desktop.core.chemistry.properties import describe_records
    from healthfm_desktop.core.chemistry.reading import read_molecules
    from healthfm_desktop.views.molecule_panel.workspace import HEADERS, MoleculesWorkspace

    app = QApplication.instance() or QApplication(sys.argv)
    start = time.perf_counter()
    records = [r for _, r in zip(range(args.rows), read_molecules(args.library, parse=False))]
    described = list(describe_records(records))
    rows = []
    for record, props in zip(records, described):
        if "error" in props:
            rows.append(MoleculeRow(id=record.id, smiles=record.smiles, source=record.source, error=props["error"]))
            continue
        props = {k: v for k, v in props.items() if k not in ("id", "smiles")}
        rows.append(MoleculeRow(id=record.id, smiles=record.smiles, source=record.source,
                                mol=Chem.MolFromSmiles(record.source), properties=props))
    print(f"prepared {len(rows)} rows in {time.perf_counter() - start:.0f} s (not timed)")

    controller = MoleculesController()
    view = MoleculesWorkspace(controller)
    view.resize(1400, 900)
    view.show()
    controller.rows = rows
    controller.rows_changed.emit()
    app.processEvents()

    plain_model = QStandardItemModel(len(rows), len(HEADERS))
    plain_model.setHorizontalHeaderLabels(HEADERS)
    for r in range(len(rows)):
        for c in range(len(HEADERS)):
            text = view.model.data(view.model.index(r, c), Qt.ItemDataRole.DisplayRole)
            if text is not None:
                plain_model.setItem(r, c, QStandardItem(text))
    plain = QTableView()
    plain.setModel(plain_model)
    plain.resize(view.table.size())
    plain.verticalHeader().setDefaultSectionSize(view.table.verticalHeader().defaultSectionSize())
    plain.show()
    app.processEvents()

    def scroll_times(table: QTableView, step: int) -> list[float]:
        bar = table.verticalScrollBar()
        bar.setValue(0)
        table.viewport().repaint()
        times = []
        for _ in range(args.steps):
            begin = time.perf_counter()
            bar.setValue(bar.value() + step)
            table.viewport().repaint()
            times.append(time.perf_counter() - begin)
        return times

    def report(what: str, ours: list[float], base: list[float]) -> None:
        ours_median, base_median = statistics.median(ours), statistics.median(base)
        p95 = sorted(ours)[int(0.95 * len(ours))]
        print(f"{what}: {ours_median / base_median:.2f}x plain QTableView+QStandardItemModel "
              f"({ours_median * 1e3:.1f} ms vs {base_median * 1e3:.1f} ms median a step; ours 95th percentile "
              f"{p95 * 1e3:.1f} ms, max {max(ours) * 1e3:.1f} ms; {len(rows)} rows)")

    wheel = 3  # rows a mouse-wheel notch scrolls
    page = view.table.verticalScrollBar().pageStep()
    report("scroll by wheel steps (3 rows, new structures drawn)", scroll_times(view.table, wheel),
           scroll_times(plain, wheel))
    report(f"scroll by pages ({page} rows, all structures new)", scroll_times(view.table, page),
           scroll_times(plain, page))

    begin = time.perf_counter()
    view.table.sortByColumn(HEADERS.index("MW"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    ours = time.perf_counter() - begin
    begin = time.perf_counter()
    plain.sortByColumn(HEADERS.index("MW"), Qt.SortOrder.DescendingOrder)
    app.processEvents()
    base = time.perf_counter() - begin
    print(f"sort {len(rows)} rows by MW: {ours / base:.2f}x QStandardItemModel sort ({ours:.2f} s vs {base:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
