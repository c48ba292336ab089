"""Notes workspace: the record annotator. Note list with per-note status, the note text with
coloured spans and a legend, a span editor (label, assertions, ConText trigger), accept/reject
of pre-annotations, undo/redo, search, the user's dictionary, export and agreement.

Keys in the text: every label has one (the legend shows it: 1-9 and 0 for the clinical labels,
Q W E R T Y for PHI) and labels the selection, snapped to whole words, or relabels the selected
span; N/U/H/F toggle negated/uncertain/historical/family of the selected span, A accepts it,
Delete removes it; J / K go to the next / previous span, L to the next one not reviewed yet
(least confident first when "review low-confidence first" is ticked). Undo and redo keep one
history per note."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from healthfm_desktop.views.record_annotator.colours import ASSERTION_KEYS, KEY_OF_LABEL, LABEL_COLOURS, LABEL_KEYS, NAVIGATION_KEYS
from healthfm_desktop.views.record_annotator.text_view import NoteTextView

ASSERTIONS = ("negated", "uncertain", "historical", "family")
STATUS_TEXT = {"todo": "to do", "in_progress": "in progress", "done": "done"}


class Legend(QWidget):
    """Coloured label chips, each with its key."""

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        self.chips: dict[str, QLabel] = {}
        for index, (label, colour) in enumerate(LABEL_COLOURS.items()):
            chip = QLabel(f"{KEY_OF_LABEL[label]} {label}")
            chip.setStyleSheet(f"background:{colour}; color:black; padding:1px 4px; border-radius:3px; font-size:9pt")
            layout.addWidget(chip, index // 4, index % 4)  # a grid keeps the workspace narrow
            self.chips[label] = chip


class EntityEditor(QGroupBox):
    """Label, assertions and the trigger of the selected span."""

    def __init__(self, parent=None):
        super().__init__("Selected span", parent)
        form = QFormLayout(self)
        self.text_label = QLabel("—")
        self.text_label.setWordWrap(True)
        self.label_box = QComboBox()
        self.label_box.addItems(list(LABEL_COLOURS))
        self.checks = {a: QCheckBox(f"{a} ({k})") for k, a in ASSERTION_KEYS.items()}
        self.trigger_label = QLabel("")
        self.trigger_label.setWordWrap(True)
        self.source_label = QLabel("")
        self.accept_button = QPushButton("Accept (A)")
        self.delete_button = QPushButton("Delete (Del)")
        form.addRow("text", self.text_label)
        form.addRow("label", self.label_box)
        for attribute in ASSERTIONS:
            form.addRow(self.checks[attribute])
        form.addRow("why", self.trigger_label)
        form.addRow("from", self.source_label)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.delete_button)
        form.addRow(buttons)
        self.show_entity(None)

    def show_entity(self, entity) -> None:
        enabled = entity is not None
        for widget in [self.label_box, self.accept_button, self.delete_button, *self.checks.values()]:
            widget.setEnabled(enabled)
        if entity is None:
            self.text_label.setText("select text and press a label's key, or click a span (J / K: next / previous)")
            self.trigger_label.setText("")
            self.source_label.setText("")
            return
        self.text_label.setText(entity.text[:200])
        self.label_box.blockSignals(True)
        self.label_box.setCurrentText(entity.label)
        self.label_box.blockSignals(False)
        for attribute, box in self.checks.items():
            box.blockSignals(True)
            box.setChecked(getattr(entity, attribute))
            box.blockSignals(False)
        self.trigger_label.setText("; ".join(_reason(t) for t in entity.triggers) or "no ConText trigger")
        confidence = f", confidence {entity.confidence:.2f}" if entity.source == "model" else ""
        self.source_label.setText(f"{entity.source}, {entity.status}{confidence}" + (f", section {entity.section}" if entity.section else ""))


def _reason(trigger) -> str:
    if trigger.category == "MANUAL_SET":
        return f"{trigger.attribute}: set by the annotator"
    if trigger.category == "MANUAL_CLEARED":
        return f"not {trigger.attribute}: cleared by the annotator"
    return f"{trigger.attribute}: “{trigger.text}”" + (" (section)" if trigger.category == "SECTION" else "")


class NotesWorkspace(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.current_id: str | None = None
        self.selected_entity: str | None = None

        # left: notes
        self.open_button = QPushButton("Open notes…")
        self.note_list = QListWidget()
        self.note_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.status_box = QComboBox()
        for key, text in STATUS_TEXT.items():
            self.status_box.addItem(text, key)
        self.annotator_edit = QLineEdit(controller.annotator)
        self.annotator_edit.setPlaceholderText("annotator name")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(self.open_button)
        left_layout.addWidget(self.note_list, 1)
        status_row = QFormLayout()
        status_row.addRow("status", self.status_box)
        status_row.addRow("annotator", self.annotator_edit)
        left_layout.addLayout(status_row)

        # centre: toolbar, legend, text
        self.undo_action = QAction("Undo", self, shortcut=QKeySequence.StandardKey.Undo, enabled=False)
        self.undo_action.triggered.connect(lambda: self.current_id and controller.undo(self.current_id))
        self.redo_action = QAction("Redo", self, shortcut=QKeySequence.StandardKey.Redo, enabled=False)
        self.redo_action.triggered.connect(lambda: self.current_id and controller.redo(self.current_id))
        self.addActions([self.undo_action, self.redo_action])
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("search the note…")
        self.search_label = QLabel("")
        self.accept_all_button = QPushButton("Accept all")
        self.reject_all_button = QPushButton("Reject all pre-annotations")
        self.export_button = QToolButton(text="Export", popupMode=QToolButton.ToolButtonPopupMode.InstantPopup)
        export_menu = QMenu(self.export_button)
        for fmt, text in (("jsonl", "JSONL…"), ("brat", "brat standoff…"), ("fhir", "FHIR R4 bundles…"), ("docbin", "spaCy DocBin…")):
            export_menu.addAction(text, lambda fmt=fmt: self._export(fmt))
        self.export_button.setMenu(export_menu)
        self.more_button = QToolButton(text="More", popupMode=QToolButton.ToolButtonPopupMode.InstantPopup)
        more_menu = QMenu(self.more_button)
        more_menu.addAction("Add selection to my dictionary…", self._add_term)
        more_menu.addAction("Re-annotate this note", self._reannotate)
        more_menu.addAction("Agreement between annotators…", self._agreement)
        more_menu.addAction("Compare with the gold spans", self._compare_gold)
        self.more_button.setMenu(more_menu)
        undo_button = QToolButton()
        undo_button.setDefaultAction(self.undo_action)
        redo_button = QToolButton()
        redo_button.setDefaultAction(self.redo_action)
        self.reject_all_button.setText("Reject all")
        self.reject_all_button.setToolTip("Remove every pre-annotation not yet reviewed")
        toolbar = QHBoxLayout()
        for widget in (undo_button, redo_button, self.export_button, self.more_button):
            toolbar.addWidget(widget)
        toolbar.addWidget(self.search_edit, 1)
        toolbar.addWidget(self.search_label)
        self.legend = Legend()
        self.text_view = NoteTextView()
        self.info_label = QLabel("")
        centre = QWidget()
        centre_layout = QVBoxLayout(centre)
        centre_layout.addLayout(toolbar)
        centre_layout.addWidget(self.legend)
        centre_layout.addWidget(self.text_view, 1)
        centre_layout.addWidget(self.info_label)

        # right: span editor
        self.editor = EntityEditor()
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.editor)
        review = QGroupBox("Pre-annotations")
        review_layout = QFormLayout(review)
        self.threshold_box = QDoubleSpinBox(minimum=0.0, maximum=1.0, singleStep=0.05, decimals=2, value=0.0)
        self.threshold_box.setToolTip("hide the model's pre-annotations less confident than this")
        self.low_first_box = QCheckBox("review low-confidence first")
        review_layout.addRow("show from confidence", self.threshold_box)
        review_layout.addRow(self.low_first_box)
        buttons = QHBoxLayout()
        buttons.addWidget(self.accept_all_button)
        buttons.addWidget(self.reject_all_button)
        review_layout.addRow(buttons)
        right_layout.addWidget(review)
        from healthfm_desktop.views.adaptation_panel import AdaptationPanel, scrolling

        self.adaptation = AdaptationPanel(controller.adaptation, self.selected_note_ids, open_item=self.open_note)
        right_layout.addWidget(scrolling(self.adaptation), 1)

        left.setMinimumWidth(120)
        right.setMinimumWidth(150)
        self.search_edit.setMinimumWidth(80)
        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(centre)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 4)
        QVBoxLayout(self).addWidget(splitter)

        # wiring
        self.open_button.clicked.connect(self._open_dialog)
        self.note_list.currentItemChanged.connect(lambda item, _prev: self.show_note(item.data(Qt.ItemDataRole.UserRole) if item else None))
        self.status_box.activated.connect(lambda _i: self.current_id and controller.set_status(self.current_id, self.status_box.currentData()))
        self.annotator_edit.editingFinished.connect(lambda: controller.set_annotator(self.annotator_edit.text()))
        self.search_edit.textChanged.connect(self._search)
        self.accept_all_button.clicked.connect(lambda: self.current_id and controller.accept_all(self.current_id, self.threshold_box.value()))
        self.reject_all_button.clicked.connect(lambda: self.current_id and controller.reject_all(self.current_id))
        self.threshold_box.valueChanged.connect(self.text_view.set_threshold)
        self.text_view.key_command.connect(self.handle_key)
        self.text_view.entity_clicked.connect(self.select_entity)
        self.editor.label_box.activated.connect(lambda _i: self._relabel(self.editor.label_box.currentText()))
        for attribute, box in self.editor.checks.items():
            box.clicked.connect(lambda _checked, a=attribute: self._toggle(a))
        self.editor.accept_button.clicked.connect(lambda: self.handle_key("A"))
        self.editor.delete_button.clicked.connect(lambda: self.handle_key("DELETE"))
        controller.notes_added.connect(self._add_notes)
        controller.note_changed.connect(self._note_changed)
        controller.status_changed.connect(self._status_changed)
        controller.history_changed.connect(lambda note_id: note_id == self.current_id and self._update_history())
        controller.message.connect(lambda level, text: self.info_label.setText(text))
        controller.progress.connect(lambda p: self.info_label.setText(p.message) if p.message else None)
        controller.restore()

    # --- notes list ----------------------------------------------------------------------------
    def _item_text(self, note_id: str) -> str:
        return f"{note_id}  [{STATUS_TEXT[self.controller.status(note_id)]}]"

    def _add_notes(self, note_ids: list[str]) -> None:
        present = {self.note_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.note_list.count())}
        for note_id in note_ids:
            if note_id in present:
                continue
            item = QListWidgetItem(self._item_text(note_id))
            item.setData(Qt.ItemDataRole.UserRole, note_id)
            self.note_list.addItem(item)
        if self.note_list.currentRow() < 0 and self.note_list.count():
            self.note_list.setCurrentRow(0)

    def _status_changed(self, note_id: str, status: str) -> None:
        for i in range(self.note_list.count()):
            item = self.note_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == note_id:
                item.setText(self._item_text(note_id))
        if note_id == self.current_id:
            self.status_box.setCurrentIndex(self.status_box.findData(status))

    def selected_note_ids(self) -> list[str]:
        ids = [item.data(Qt.ItemDataRole.UserRole) for item in self.note_list.selectedItems()]
        return ids or ([self.current_id] if self.current_id else [])

    def open_note(self, record: dict) -> None:
        """Show the note of a find-similar neighbour the user clicked."""
        for i in range(self.note_list.count()):
            item = self.note_list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == record["id"]:
                self.note_list.setCurrentItem(item)
                self.note_list.scrollToItem(item)
                return

    def show_note(self, note_id: str | None) -> None:
        self.current_id = note_id
        self.selected_entity = None
        self.editor.show_entity(None)
        if note_id is None:
            self.text_view.set_note("", [])
            self._update_history()
            return
        note = self.controller.note(note_id)
        self.text_view.set_note(note.text, note.entities)
        self.status_box.setCurrentIndex(self.status_box.findData(self.controller.status(note_id)))
        self._search(self.search_edit.text())
        self._update_info()
        self._update_history()

    def _update_history(self) -> None:
        session = self.controller.session
        for action, can, text, name in ((self.undo_action, session.can_undo, session.undo_text, "Undo"), (self.redo_action, session.can_redo, session.redo_text, "Redo")):
            action.setEnabled(can(self.current_id))
            action.setText(f"{name} {text(self.current_id)}".strip())

    def _note_changed(self, note_id: str) -> None:
        if note_id != self.current_id:
            return
        note = self.controller.note(note_id)
        self.text_view.set_note(note.text, note.entities)
        entity = self._entity(self.selected_entity)
        if entity is None and self.selected_entity is not None:
            self.selected_entity = None
        self.text_view.set_selected(self.selected_entity)
        self.editor.show_entity(entity)
        self._update_info()

    def _update_info(self) -> None:
        if self.current_id is None:
            return
        entities = self.controller.note(self.current_id).entities
        pending = sum(e.status == "pre" for e in entities)
        self.info_label.setText(f"{len(entities)} spans, {pending} pre-annotations to review")

    # --- spans -------------------------------------------------------------------------------------
    def _entity(self, entity_id: str | None):
        if self.current_id is None or entity_id is None:
            return None
        return next((e for e in self.controller.note(self.current_id).entities if e.id == entity_id), None)

    def select_entity(self, entity_id: str | None) -> None:
        self.selected_entity = entity_id
        self.text_view.set_selected(entity_id)
        self.editor.show_entity(self._entity(entity_id))

    def handle_key(self, key: str) -> None:
        if self.current_id is None:
            return
        if key in LABEL_KEYS:
            label = LABEL_KEYS[key]
            selection = self.text_view.selection_range()
            if selection:
                added = self.controller.add_entity(self.current_id, selection[0], selection[1], label)
                self.select_entity(added.id if added else None)
            elif self.selected_entity:
                self._relabel(label)
            return
        if key in NAVIGATION_KEYS:
            self._move(NAVIGATION_KEYS[key])
            return
        if self.selected_entity is None:
            return
        if key in ASSERTION_KEYS:
            self._toggle(ASSERTION_KEYS[key])
        elif key == "A":
            self.controller.accept(self.current_id, self.selected_entity)
        elif key == "DELETE":
            self.controller.remove_entity(self.current_id, self.selected_entity)

    def _move(self, where: str) -> None:
        target = self.controller.session.neighbour(
            self.current_id,
            self.selected_entity,
            -1 if where == "previous" else 1,
            unreviewed_only=where == "next_unreviewed",
            threshold=self.threshold_box.value(),
            low_confidence_first=self.low_first_box.isChecked(),
        )
        if target is None:
            self.info_label.setText("no span left to review in this note" if where == "next_unreviewed" else "no span in this note")
            return
        self.select_entity(target)
        entity = self._entity(target)
        if entity is not None:
            cursor = self.text_view.textCursor()
            cursor.setPosition(entity.start)
            self.text_view.setTextCursor(cursor)
            self.text_view.ensureCursorVisible()

    def _relabel(self, label: str) -> None:
        if self.current_id and self.selected_entity:
            self.controller.set_label(self.current_id, self.selected_entity, label)

    def _toggle(self, attribute: str) -> None:
        if self.current_id and self.selected_entity:
            self.controller.toggle_assertion(self.current_id, self.selected_entity, attribute)

    # --- search, dictionary, export, agreement ---------------------------------------------------
    def _search(self, query: str) -> None:
        if not self.current_id or len(query.strip()) < 2:
            self.text_view.set_search_hits([])
            self.search_label.setText("")
            return
        text = self.controller.note(self.current_id).text.lower()
        needle = query.lower()
        hits, start = [], text.find(needle)
        while start >= 0 and len(hits) < 5000:
            hits.append((start, start + len(needle)))
            start = text.find(needle, start + 1)
        self.text_view.set_search_hits(hits)
        self.search_label.setText(f"{len(hits)} found")
        if hits:
            self.text_view.select_range(*hits[0])
            self.text_view.ensureCursorVisible()

    def _open_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Open notes", "", "Notes (*.txt *.jsonl *.text *.note);;All files (*)")
        if paths:
            self.controller.open_paths([Path(p) for p in paths])

    def _export(self, fmt: str) -> None:
        if not self.current_id:
            return
        ids = self.controller.note_ids()
        if fmt in ("jsonl", "docbin"):
            suffix = ".jsonl" if fmt == "jsonl" else ".spacy"
            path, _ = QFileDialog.getSaveFileName(self, "Export", f"notes{suffix}")
        else:
            path = QFileDialog.getExistingDirectory(self, "Export to folder")
        if path:
            self.controller.export(ids, fmt, Path(path))

    def _add_term(self) -> None:
        selection = self.text_view.selection_range()
        if not selection or not self.current_id:
            self.info_label.setText("select a term in the text first")
            return
        term = self.controller.note(self.current_id).text[selection[0] : selection[1]]
        label, ok = QInputDialog.getItem(self, "Add to my dictionary", f"label for “{term}”", list(LABEL_COLOURS), 0, False)
        if ok:
            self.controller.add_term(term, label)
            self.info_label.setText(f"“{term}” is now always {label} (re-annotate to apply)")

    def _reannotate(self) -> None:
        if self.current_id:
            self.controller.reannotate(self.current_id)

    def _compare_gold(self) -> None:
        if self.current_id:
            self.info_label.setText(self.controller.compare_with_gold(self.current_id))

    def _agreement(self) -> None:
        names = self.controller.annotators()
        if len(names) < 2:
            QMessageBox.information(self, "Agreement", "Agreement needs the versions of two annotators (change the annotator name to start a second version).")
            return
        first, ok = QInputDialog.getItem(self, "Agreement", "first annotator", names, 0, False)
        if not ok:
            return
        second, ok = QInputDialog.getItem(self, "Agreement", "second annotator", [n for n in names if n != first], 0, False)
        if not ok:
            return
        try:
            result = self.controller.agreement(first, second)
        except ValueError as exc:
            QMessageBox.warning(self, "Agreement", str(exc))
            return
        QMessageBox.information(
            self,
            "Agreement",
            f"{result['notes']} notes: Cohen's kappa {result['cohens_kappa']:.3f}, span F1 exact {result['exact_span_f1']:.3f}, relaxed {result['relaxed_span_f1']:.3f}",
        )
