"""The note text with coloured entity spans and their label names drawn under them (as brat
draws them over theirs). Only the spans in (and near) the visible part of the document are drawn, as extra
selections recomputed on scroll: a 50-page note costs what one screen costs."""

from __future__ import annotations

import bisect

from PySide6.QtCore import QEvent, QRect, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QTextBlockFormat, QTextCharFormat, QTextCursor, QTextFormat
from PySide6.QtWidgets import QTextEdit

from healthfm_desktop.views.record_annotator.colours import ASSERTION_KEYS, LABEL_KEYS, NAVIGATION_KEYS, colour_for, short_name


class NoteTextView(QTextEdit):
    entity_clicked = Signal(str)  # entity id
    key_command = Signal(str)  # a label key (colours.LABEL_KEYS), "N", "U", "H", "F", "A", "J", "K", "L", "DELETE"

    MARGIN_CHARS = 4000  # draw spans this far beyond the viewport so scrolling shows them at once

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setReadOnly(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setFont(QFont("monospace", 10))
        self.setLineWrapMode(QTextEdit.LineWrapMode.WidgetWidth)
        self._entities: list = []  # the shown ones, sorted by start
        self._all_entities: list = []
        self._starts: list[int] = []
        self._selected: str | None = None
        self._search_hits: list[tuple[int, int]] = []
        self._tags: list = []  # the spans whose label names the last redraw painted
        self.threshold = 0.0  # pre-annotations less confident than this are not shown
        self._tag_font = QFont("sans-serif", 7)
        self._redraw = QTimer(self, singleShot=True, interval=15)
        self._redraw.timeout.connect(self._draw_visible)
        self.verticalScrollBar().valueChanged.connect(lambda _v: self._redraw.start())
        self.viewport().installEventFilter(self)
        self.drawn_count = 0  # how many spans the last redraw drew (the smoothness test reads it)

    # --- content ----------------------------------------------------------------------------
    def set_note(self, text: str, entities: list) -> None:
        if text != self.toPlainText():
            self.setPlainText(text)
            # taller lines leave room under the text for the label names
            cursor = QTextCursor(self.document())
            cursor.select(QTextCursor.SelectionType.Document)
            block = QTextBlockFormat()
            block.setLineHeight(175, QTextBlockFormat.LineHeightTypes.ProportionalHeight.value)
            block.setTopMargin(0)
            cursor.mergeBlockFormat(block)
        self.set_entities(entities)

    def set_threshold(self, threshold: float) -> None:
        self.threshold = threshold
        self.set_entities(self._all_entities)

    def set_entities(self, entities: list) -> None:
        self._all_entities = list(entities)
        entities = [e for e in entities if e.status != "pre" or e.confidence >= self.threshold]
        self._entities = sorted(entities, key=lambda e: (e.start, e.end))
        self._starts = [e.start for e in self._entities]
        self._draw_visible()

    def set_selected(self, entity_id: str | None) -> None:
        self._selected = entity_id
        self._draw_visible()

    def set_search_hits(self, hits: list[tuple[int, int]]) -> None:
        self._search_hits = hits
        self._draw_visible()

    def selection_range(self) -> tuple[int, int] | None:
        cursor = self.textCursor()
        if not cursor.hasSelection():
            return None
        return cursor.selectionStart(), cursor.selectionEnd()

    def select_range(self, start: int, end: int) -> None:
        cursor = self.textCursor()
        cursor.setPosition(start)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        self.setTextCursor(cursor)

    def visible_range(self) -> tuple[int, int]:
        top = self.cursorForPosition(self.viewport().rect().topLeft()).position()
        bottom = self.cursorForPosition(self.viewport().rect().bottomRight()).position()
        return top, bottom

    # --- drawing -------------------------------------------------------------------------------
    def _selection(self, start: int, end: int, fmt: QTextCharFormat) -> QTextEdit.ExtraSelection:
        selection = QTextEdit.ExtraSelection()
        cursor = QTextCursor(self.document())
        cursor.setPosition(start)
        cursor.setPosition(min(end, self.document().characterCount() - 1), QTextCursor.MoveMode.KeepAnchor)
        selection.cursor = cursor
        selection.format = fmt
        return selection

    def _draw_visible(self) -> None:
        top, bottom = self.visible_range()
        low, high = max(0, top - self.MARGIN_CHARS), bottom + self.MARGIN_CHARS
        first = max(0, bisect.bisect_left(self._starts, low) - 50)  # a few long spans may start earlier
        selections = []
        selected_entity = None
        self._tags = []
        for entity in self._entities[first : bisect.bisect_right(self._starts, high)]:
            if entity.end < low:
                continue
            if top <= entity.end and entity.start <= bottom:
                self._tags.append(entity)
            fmt = QTextCharFormat()
            fmt.setBackground(colour_for(entity.label))
            if entity.status == "pre":
                fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.DotLine)  # not reviewed yet
            if entity.negated:
                fmt.setFontStrikeOut(True)
            if entity.id == self._selected:
                fmt.setFontWeight(QFont.Weight.Bold)
                fmt.setProperty(QTextFormat.Property.OutlinePen, QColor("black"))
                selected_entity = entity
            confidence = f", confidence {entity.confidence:.2f}" if entity.source == "model" else ""
            fmt.setToolTip(f"{entity.label} ({entity.source}, {entity.status}{confidence})")
            selections.append(self._selection(entity.start, entity.end, fmt))
        if selected_entity is not None:
            for trigger in selected_entity.triggers:
                fmt = QTextCharFormat()
                fmt.setBackground(QColor("#ffe000"))
                fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.SingleUnderline)
                fmt.setToolTip(f"ConText trigger ({trigger.attribute})")
                selections.append(self._selection(trigger.start, trigger.end, fmt))
        for start, end in self._search_hits:
            if end >= low and start <= high:
                fmt = QTextCharFormat()
                fmt.setUnderlineStyle(QTextCharFormat.UnderlineStyle.WaveUnderline)
                fmt.setUnderlineColor(QColor("#d00000"))
                selections.append(self._selection(start, end, fmt))
        self.drawn_count = len(selections)
        self.setExtraSelections(selections)
        self.viewport().update()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if not self._tags:
            return
        painter = QPainter(self.viewport())
        painter.setFont(self._tag_font)
        metrics = QFontMetrics(self._tag_font)
        right_of_last: dict[int, int] = {}  # per line (its y): where the last tag ended
        for entity in self._tags:
            cursor = QTextCursor(self.document())
            cursor.setPosition(min(entity.start, self.document().characterCount() - 1))
            rect = self.cursorRect(cursor)
            name = short_name(entity.label)
            width = metrics.horizontalAdvance(name) + 4
            x = max(rect.left(), right_of_last.get(rect.top(), -10**6) + 2)
            box = QRect(x, rect.bottom() + 1, width, metrics.height())  # in the gap the taller line leaves below the text
            right_of_last[rect.top()] = box.right()
            painter.fillRect(box, colour_for(entity.label).darker(135))
            painter.setPen(QColor("black") if entity.status != "pre" else QColor("#333333"))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, name)
        painter.end()

    def tag_names(self) -> list[tuple[str, str]]:
        """(entity id, drawn label name) of the spans whose names are on screen (tests read it)."""
        return [(e.id, short_name(e.label)) for e in self._tags]

    def entity_at(self, position: int):
        index = bisect.bisect_right(self._starts, position)
        best = None
        for entity in self._entities[max(0, index - 50) : index]:
            if entity.start <= position < entity.end and (best is None or entity.end - entity.start < best.end - best.start):
                best = entity
        return best

    # --- input ----------------------------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:
        if obj is self.viewport():
            if event.type() == QEvent.Type.Resize:
                self._redraw.start()
            elif event.type() == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
                if not self.textCursor().hasSelection():
                    entity = self.entity_at(self.cursorForPosition(event.position().toPoint()).position())
                    if entity is not None:
                        self.entity_clicked.emit(entity.id)
        return super().eventFilter(obj, event)

    def keyPressEvent(self, event) -> None:
        text = event.text().upper()
        if event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier):
            super().keyPressEvent(event)
        elif text and (text in LABEL_KEYS or text in ASSERTION_KEYS or text in NAVIGATION_KEYS or text == "A"):
            self.key_command.emit(text)
        elif event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.key_command.emit("DELETE")
        else:
            super().keyPressEvent(event)
