"""The Molecules workspace's state, Qt-free (napari's model): the table's rows with the ids,
names and fields their file carried, filters, a table search shown as a filter, library hits
or analogues shown as a linked view beside the table, duplicates, the library index in use."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from healthfm_desktop.core.chemistry.answers import shown_answers
from healthfm_desktop.core.events import Event

#: (header, property key, decimals) of the described properties, in table order
PROPERTY_COLUMNS = [
    ("MW", "mw", 1), ("cLogP", "logp", 2), ("TPSA", "tpsa", 1), ("HBD", "hbd", 0), ("HBA", "hba", 0),
    ("RotB", "rotb", 0), ("Rings", "rings", 0), ("Fsp3", "fsp3", 2), ("QED", "qed", 2),
]
DEFAULT_HIT_LIMIT = 100
TABLE, HITS = "table", "hits"

_keys = itertools.count(1)


@dataclass(eq=False)
class MoleculeRow:
    """One row. ``mol`` is RDKit's molecule (made and read in core and controllers, never by
    views), ``original`` the input SMILES when standardisation changed it, ``fields`` the other
    columns or SD tags of the file (``name``, ``chembl_id``, ...), ``key`` unique in a session."""

    id: str
    smiles: str
    source: str
    mol: object | None = None
    error: str | None = None
    original: str | None = None
    properties: dict = field(default_factory=dict)
    alert_atoms: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    in_domain: dict = field(default_factory=dict)
    neighbours: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)  # key -> 90 % conformal [low, high]
    prediction_sets: dict = field(default_factory=dict)  # key -> 90 % conformal set of labels
    domain_reasons: dict = field(default_factory=dict)  # key -> why it is outside the model's domain
    score: float | None = None
    fields: dict = field(default_factory=dict)
    key: int = field(default_factory=lambda: next(_keys))

    @property
    def duplicate_key(self) -> str | None:
        """Canonical SMILES of the (standardised) structure: equal keys, same structure."""
        return self.smiles if self.mol is not None and self.smiles else None

    def answers(self, show_withheld: bool = False) -> dict:
        """Predictions, intervals and sets as the user is given them: out of a model's domain,
        withheld (None) unless ``show_withheld`` ("Run anyway")."""
        return shown_answers(self.predictions, self.in_domain, self.intervals, self.prediction_sets, show_withheld)

    def withheld(self, key: str, show_withheld: bool = False) -> bool:
        return key in self.predictions and not show_withheld and not self.in_domain.get(key, True)

    def flat(self, show_withheld: bool = False) -> dict:
        """The row as one level of named values, as exported: id, SMILES, the file's own fields,
        properties, predictions (withheld ones empty unless ``show_withheld``), score, error."""
        out = {"id": self.id, "smiles": self.smiles}
        if self.original:
            out["original_smiles"] = self.original
        for name, value in self.fields.items():
            if name.lower() not in ("id", "smiles"):
                out.setdefault(name, value)
        for name, value in self.properties.items():
            out[name] = ";".join(value) if isinstance(value, list) else value
        for name, value in self.answers(show_withheld)["predictions"].items():
            out[name] = value
            out[f"{name} in_domain"] = self.in_domain.get(name)
        if self.score is not None:
            out["score"] = self.score
        if self.error:
            out["error"] = self.error
        return out


@dataclass
class Filters:
    text: str = ""  # in the id, the SMILES or any field the file carried (names, ids)
    lipinski_only: bool = False
    no_alerts: bool = False
    valid_only: bool = False
    duplicates_only: bool = False


@dataclass
class TableSearch:
    """A search over the table, shown as a filter: the rows with a score are the hits."""

    description: str
    scores: dict[int, float]  # row key -> score
    searched: int  # rows searched


@dataclass
class HitList:
    """Rows that are not in the table (library hits, proposed analogues), shown beside it."""

    description: str
    rows: list[MoleculeRow]


@dataclass
class IndexState:
    """The library index searched last: what it indexes and whether it was reused."""

    library: str
    folder: str
    size: int
    reused: bool
    build_seconds: float | None = None

    def describe(self) -> str:
        how = "reused" if self.reused else (f"built in {self.build_seconds:.0f} s" if self.build_seconds is not None
                                            else "opened")
        return f"index of {self.library}: {self.size:,} molecules ({how})"


class SessionEvents:
    """What a MoleculeSession announces (its controller relays each as a Qt signal)."""

    def __init__(self) -> None:
        self.rows_changed = Event()  # () the shown rows were replaced, added, removed or reordered
        self.rows_updated = Event()  # () values of rows changed (predictions)
        self.view_changed = Event()  # () filters, the table search, table or hit list
        self.index_changed = Event()  # (IndexState) the library index in use


class MoleculeSession:
    """State and events of one Molecules workspace."""

    def __init__(self) -> None:
        self.events = SessionEvents()
        self.rows: list[MoleculeRow] = []
        self.filters = Filters()
        self.table_search: TableSearch | None = None
        self.hits: HitList | None = None
        self.view = TABLE
        self.index: IndexState | None = None
        self.hit_limit = DEFAULT_HIT_LIMIT  # 0: no limit
        # predictions outside a model's applicability domain are withheld until the user asks
        # for them ("Run anyway"); they are then shown and exported marked as such
        self.show_withheld = False
        self._duplicate_counts: dict[str, int] | None = None  # structure -> rows; None: count again

    # ---- the rows --------------------------------------------------------------------------
    @property
    def shown(self) -> list[MoleculeRow]:
        """The rows of the view in front: the table, or the hit list beside it."""
        return self.hits.rows if self.view == HITS and self.hits is not None else self.rows

    def add_rows(self, rows: list[MoleculeRow]) -> None:
        """Append to the table (and bring the table to the front)."""
        self.rows.extend(rows)
        self._duplicate_counts = None
        self.view = TABLE
        self.events.rows_changed.emit()
        self.events.view_changed.emit()

    def rows_updated(self) -> None:
        self.events.rows_updated.emit()

    def set_show_withheld(self, show: bool) -> None:
        if show != self.show_withheld:
            self.show_withheld = show
            self.events.rows_updated.emit()

    def field_names(self) -> list[str]:
        """The file's own columns / SD tags seen in the rows shown, first seen first."""
        names: dict[str, None] = {}
        for row in self.shown:
            for name in row.fields:
                if name.lower() not in ("id", "smiles"):
                    names.setdefault(name, None)
        return list(names)

    # ---- filters and searches --------------------------------------------------------------
    def set_filters(self, **changes) -> None:
        for name, value in changes.items():
            if not hasattr(self.filters, name):
                raise AttributeError(name)
            setattr(self.filters, name, value.strip().lower() if name == "text" else value)
        self.events.view_changed.emit()

    def accepts(self, row: MoleculeRow) -> bool:
        """Whether ``row`` passes the filters (and, in the table, the table search)."""
        f = self.filters
        if self.view == TABLE and self.table_search is not None and row.key not in self.table_search.scores:
            return False
        if f.text and not (f.text in row.id.lower() or f.text in row.smiles.lower()
                           or any(f.text in str(v).lower() for v in row.fields.values())):
            return False
        if f.valid_only and row.error:
            return False
        if f.lipinski_only and not row.properties.get("lipinski_pass"):
            return False
        if f.no_alerts and row.properties.get("alerts"):
            return False
        if f.duplicates_only and self.duplicate_count(row) < 2:
            return False
        return True

    def visible(self) -> list[MoleculeRow]:
        return [row for row in self.shown if self.accepts(row)]

    def apply_table_search(self, description: str, scored: list[tuple[int, float]], searched: int) -> None:
        """Show a table search as a filter (best first); the table itself is kept."""
        self.table_search = TableSearch(description, dict(scored), searched)
        self.view = TABLE
        order = {key: i for i, (key, _) in enumerate(scored)}
        # hits first, best first; the other rows keep their order after them
        self.rows.sort(key=lambda r: order.get(r.key, len(order)))
        self.events.rows_changed.emit()
        self.events.view_changed.emit()

    def show_hits(self, description: str, rows: list[MoleculeRow]) -> None:
        """Library hits or analogues, in a view beside the table."""
        self.hits = HitList(description, rows)
        self.view = HITS
        self.events.rows_changed.emit()
        self.events.view_changed.emit()

    def show_all(self) -> None:
        """Back to the whole table: the table search is lifted, the hit list put aside."""
        changed = self.view != TABLE
        self.view = TABLE
        self.table_search = None
        if changed:
            self.events.rows_changed.emit()
        self.events.view_changed.emit()

    def show_hit_list(self) -> None:
        if self.hits is not None and self.view != HITS:
            self.view = HITS
            self.events.rows_changed.emit()
            self.events.view_changed.emit()

    def add_hits_to_table(self) -> int:
        """Copy the hit list's rows not yet in the table (by structure) into the table."""
        if self.hits is None:
            return 0
        known = {r.duplicate_key for r in self.rows if r.duplicate_key}
        new = [r for r in self.hits.rows if r.duplicate_key not in known]
        self.rows.extend(new)
        self._duplicate_counts = None
        self.show_all()
        self.events.rows_changed.emit()
        return len(new)

    def score_of(self, row: MoleculeRow) -> float | None:
        if self.view == TABLE and self.table_search is not None:
            return self.table_search.scores.get(row.key)
        return row.score

    def status(self) -> str:
        """One line on what is shown, for the bar above the table."""
        if self.view == HITS and self.hits is not None:
            return f"{len(self.hits.rows)} {self.hits.description} — beside the table of {len(self.rows)} rows"
        if self.table_search is not None:
            return (f"{len(self.table_search.scores)} of {self.table_search.searched} rows: "
                    f"{self.table_search.description}")
        return f"{len(self.rows)} rows"

    def set_index(self, state: IndexState) -> None:
        self.index = state
        self.events.index_changed.emit(state)

    # ---- duplicates ------------------------------------------------------------------------
    def duplicate_groups(self) -> dict[str, list[MoleculeRow]]:
        """Rows of the table with the same standardised structure, groups of two or more."""
        groups: dict[str, list[MoleculeRow]] = {}
        for row in self.rows:
            if row.duplicate_key:
                groups.setdefault(row.duplicate_key, []).append(row)
        return {k: g for k, g in groups.items() if len(g) > 1}

    def duplicate_count(self, row: MoleculeRow) -> int:
        """How many rows of the table have ``row``'s structure (1 when unique or unreadable)."""
        if not row.duplicate_key:
            return 1
        if self._duplicate_counts is None:
            counts: dict[str, int] = {}
            for r in self.rows:
                if r.duplicate_key:
                    counts[r.duplicate_key] = counts.get(r.duplicate_key, 0) + 1
            self._duplicate_counts = counts
        return self._duplicate_counts.get(row.duplicate_key, 1)

    def duplicate_label(self, row: MoleculeRow) -> str | None:
        """"3× (first: CHEMBL25)" for a row whose structure the table holds more than once."""
        count = self.duplicate_count(row)
        if count < 2:
            return None
        first = next(r for r in self.rows if r.duplicate_key == row.duplicate_key)
        return f"{count}× (first: {first.id})"

    def merge_duplicates(self) -> int:
        """Merge each group of duplicates into its first row: ids joined, each field keeps its
        distinct values joined by "; ". Returns how many rows were merged away."""
        removed: set[int] = set()
        for group in self.duplicate_groups().values():
            keep, others = group[0], group[1:]
            keep.id = "; ".join(dict.fromkeys([keep.id, *(r.id for r in others)]))
            for name in dict.fromkeys(n for r in group for n in r.fields):
                values = [str(r.fields[name]) for r in group if r.fields.get(name) not in (None, "")]
                keep.fields[name] = "; ".join(dict.fromkeys(values))
            removed.update(r.key for r in others)
        if removed:
            self.rows = [r for r in self.rows if r.key not in removed]
            if self.table_search is not None:
                self.table_search.scores = {k: s for k, s in self.table_search.scores.items() if k not in removed}
            self._duplicate_counts = None
            self.events.rows_changed.emit()
            self.events.view_changed.emit()
        return len(removed)

    # ---- columns for plots -----------------------------------------------------------------
    def column_names(self) -> list[str]:
        """Every column a plot can use: properties, predictions, score, the file's fields."""
        names = [label for label, _, _ in PROPERTY_COLUMNS] + ["Alerts", "Lipinski", "Score"]
        predicted: dict[str, None] = {}
        for row in self.shown:
            for name in row.predictions:
                predicted.setdefault(name, None)
        return names + list(predicted) + self.field_names()

    def column_value(self, row: MoleculeRow, name: str):
        """A row's value in ``name`` (see column_names): a number, a string, or None."""
        for label, key, _ in PROPERTY_COLUMNS:
            if name == label:
                return row.properties.get(key)
        if name == "Alerts":
            return len(row.properties["alerts"]) if row.properties else None
        if name == "Lipinski":
            return None if not row.properties else ("pass" if row.properties["lipinski_pass"] else "fail")
        if name == "Score":
            return self.score_of(row)
        if name in row.predictions:
            return None if row.withheld(name, self.show_withheld) else row.predictions[name]
        value = row.fields.get(name)
        if isinstance(value, str):
            number = _number(value)
            return value if number is None else number
        return value

    def numeric_column_names(self) -> list[str]:
        """Columns with a number in at least one shown row and nothing but numbers or blanks (in
        an even sample of at most 2,000 rows: this runs on the UI thread)."""
        rows = self.shown
        sample = rows[:: max(1, len(rows) // 2000)]
        out = []
        for name in self.column_names():
            values = [self.column_value(r, name) for r in sample]
            present = [v for v in values if v is not None and v != ""]
            if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
                out.append(name)
        return out


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
