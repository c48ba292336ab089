"""The series browser: one tile per series (thumbnail, modality, description, slice count);
clicking a tile shows that series in the active viewport."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QListView, QListWidget, QListWidgetItem, QStyledItemDelegate, QStyleOptionViewItem,
                               QWidget)

THUMBNAIL_SIZE = 96
_SERIES_ROLE = Qt.ItemDataRole.UserRole


def thumbnail_pixmap(pixels: np.ndarray, ratio: float = 1.0) -> QPixmap:
    """A uint8 greyscale (HxW) or RGB (HxWx3) thumbnail as a pixmap of THUMBNAIL_SIZE logical
    pixels, drawn for the screen's pixel ``ratio`` (sharp at 2x, not a 96 px picture scaled up)."""
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    fmt = QImage.Format.Format_Grayscale8 if pixels.ndim == 2 else QImage.Format.Format_RGB888
    image = QImage(pixels.data, width, height, pixels.strides[0], fmt).copy()
    side = round(THUMBNAIL_SIZE * ratio)
    pixmap = QPixmap.fromImage(image.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                            Qt.TransformationMode.SmoothTransformation))
    pixmap.setDevicePixelRatio(ratio)
    return pixmap


def _placeholder() -> QPixmap:
    pixmap = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    pixmap.fill(QColor(40, 40, 40))
    return pixmap


class TileDelegate(QStyledItemDelegate):
    """Tile text wrapped at word boundaries in the list's width; a word too long for it (a file
    name, "TRAUMA/PLAIN") is elided in the middle, where it widened every tile past the list's
    edge (clipped text and a horizontal scroll bar). The whole text is the tile's tooltip."""

    def _text_width(self, option) -> int:
        """The text's share of a tile: the viewport less the spacing, the icon and the style's
        text margins (a few pixels each side)."""
        view = self.parent()
        width = view.viewport().width() - 2 * view.spacing() - 16
        if not option.icon.isNull():
            width -= view.iconSize().width() + 16
        return max(width, 24)

    def initStyleOption(self, option, index) -> None:  # noqa: N802 - Qt API
        super().initStyleOption(option, index)
        width, metrics = self._text_width(option), option.fontMetrics
        option.text = "\n".join(
            " ".join(metrics.elidedText(word, Qt.TextElideMode.ElideMiddle, width) for word in line.split(" "))
            for line in option.text.split("\n"))

    def sizeHint(self, option, index) -> QSize:  # noqa: N802 - Qt API
        """As tall as the text wrapped in the list's width now: the list's own hint kept the
        line count of the width it was first laid out in, so a heading cut to "Study · …"
        once a vertical scroll bar narrowed the list."""
        hint = super().sizeHint(option, index)
        item = QStyleOptionViewItem(option)
        self.initStyleOption(item, index)
        width = self._text_width(item)
        text = item.fontMetrics.boundingRect(QRect(0, 0, width, 100_000), Qt.TextFlag.TextWordWrap, item.text)
        view = self.parent()
        width = min(hint.width(), view.viewport().width() - 2 * view.spacing())
        return QSize(width, max(hint.height(), text.height() + 6))


class SeriesBrowser(QListWidget):
    series_activated = Signal(str)  # series key

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("seriesBrowser")
        self.setViewMode(QListView.ViewMode.ListMode)
        self.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.setWordWrap(True)
        self.setSpacing(2)
        self.setItemDelegate(TileDelegate(self))
        self.setResizeMode(QListView.ResizeMode.Adjust)  # lay the tiles out again in a new width
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(230)
        self.itemClicked.connect(self._emit)
        self.itemActivated.connect(self._emit)

    def set_series(self, entries: list[dict]) -> None:
        """``entries``: dicts with key, modality, description, frames, patient, and optional
        study (a heading line: series of one study are listed under it) and note."""
        selected = self.current_key()
        icons = {self.item(i).data(_SERIES_ROLE): self.item(i).icon() for i in range(self.count())
                 if self.item(i).data(_SERIES_ROLE)}
        self.clear()
        heading = None
        for entry in entries:
            study = entry.get("study")
            if study and study != heading:
                heading = study
                header = QListWidgetItem(study)
                header.setFlags(Qt.ItemFlag.NoItemFlags)  # a heading, not a series
                header.setToolTip(study)
                font = header.font()
                font.setBold(True)
                header.setFont(font)
                header.setForeground(QColor(90, 90, 90))
                self.addItem(header)
            text = f"{entry.get('modality') or '?'}  {entry.get('description') or '(no description)'}\n{entry['frames']} image(s)"
            if entry.get("note"):
                text += f"\n⚠ {entry['note']}"
            item = QListWidgetItem(icons.get(entry["key"]) or QIcon(_placeholder()), text)
            item.setData(_SERIES_ROLE, entry["key"])
            item.setToolTip(text + (f"\n{study}" if study else ""))
            self.addItem(item)
            if entry["key"] == selected:
                self.setCurrentItem(item)

    def series_count(self) -> int:
        return len(self.keys())

    def set_thumbnail(self, key: str, pixels: np.ndarray) -> None:
        for i in range(self.count()):
            if self.item(i).data(_SERIES_ROLE) == key:
                self.item(i).setIcon(QIcon(thumbnail_pixmap(pixels, self.devicePixelRatioF())))

    def has_thumbnail(self, key: str) -> bool:
        for i in range(self.count()):
            item = self.item(i)
            if item.data(_SERIES_ROLE) == key:
                return item.icon().pixmap(8, 8).toImage().pixelColor(4, 4) != QColor(40, 40, 40)
        return False

    def keys(self) -> list[str]:
        return [key for key in (self.item(i).data(_SERIES_ROLE) for i in range(self.count())) if key]

    def item_for(self, key: str) -> QListWidgetItem | None:
        for i in range(self.count()):
            if self.item(i).data(_SERIES_ROLE) == key:
                return self.item(i)
        return None

    def current_key(self) -> str | None:
        item = self.currentItem()
        return None if item is None else item.data(_SERIES_ROLE)

    def select(self, key: str) -> None:
        for i in range(self.count()):
            if self.item(i).data(_SERIES_ROLE) == key:
                self.setCurrentRow(i)

    def _emit(self, item: QListWidgetItem) -> None:
        key = item.data(_SERIES_ROLE)
        if key:
            self.series_activated.emit(key)
