"""The "AI analysis" side panel of the Images workspace: choose a model (or let the scope
choose), Analyse / Cancel with progress, and the result: first why an image is outside the
model's scope (the answer withheld, "Run anyway" to see it marked), then the label, calibrated
probability and conformal set or the head circumference, model, provider, latency, the saliency
(with its colour scale and caption) or segmentation overlay with an opacity slider, and export."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

PANEL_TITLE = "AI analysis"
USER_MODEL = "user:"  # the choice prefix of a user's own model (core.imaging.ai.analysis.USER_MODEL)
OVERLAY_NAMES = ("ai-saliency", "ai-segmentation")
SHAPE_NAME = "ai-head"
CHOICES = [("Automatic (the model made for the image)", "auto"), ("Pneumonia classifier (chest X-ray)", "classify"),
           ("Fetal head segmenter (ultrasound)", "segment")]


class AnalysisPanel(QWidget):
    analyse_requested = Signal(str, object)  # choice, pixel spacing in mm or None
    analyse_series_requested = Signal(str, object)
    run_anyway_requested = Signal(str, object)  # task of the withheld answer, pixel spacing
    cancel_requested = Signal()
    export_requested = Signal(str)  # folder
    opacity_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.model_choice = QComboBox()
        for text, value in CHOICES:
            self.model_choice.addItem(text, value)
        form.addRow("Model", self.model_choice)
        self.spacing = QDoubleSpinBox()
        self.spacing.setRange(0.0, 10.0)
        self.spacing.setDecimals(4)
        self.spacing.setSingleStep(0.01)
        self.spacing.setSpecialValueText("from the file")
        self.spacing.setSuffix(" mm")
        self.spacing.setToolTip("Pixel spacing to use when the file has none (0 = use the file's own)")
        form.addRow("Pixel spacing", self.spacing)
        layout.addLayout(form)

        buttons = QHBoxLayout()
        self.analyse_button = QPushButton("Analyse")
        self.analyse_button.setToolTip("Run the model on the image on screen")
        self.series_button = QPushButton("Analyse series")
        self.series_button.setToolTip("Run the model on every image of the series on screen")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.analyse_button)
        buttons.addWidget(self.series_button)
        buttons.addWidget(self.cancel_button)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setTextVisible(True)
        self.progress.hide()
        layout.addWidget(self.progress)

        self.warning = QLabel("")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("QLabel { background: #fff3cd; color: #664d03; border: 1px solid #ffe69c; padding: 6px; }")
        self.warning.hide()
        layout.addWidget(self.warning)  # the reasons come first, before any answer
        self.run_anyway_button = QPushButton("Run anyway")
        self.run_anyway_button.setToolTip("Show the model's answer for this image although it is outside what the model was made for")
        self.run_anyway_button.hide()
        layout.addWidget(self.run_anyway_button)

        self.headline = QLabel("No analysis yet.")
        self.headline.setWordWrap(True)
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.3)
        font.setBold(True)
        self.headline.setFont(font)
        layout.addWidget(self.headline)
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.details)
        self.series_summary = QLabel("")
        self.series_summary.setWordWrap(True)
        self.series_summary.hide()
        layout.addWidget(self.series_summary)
        self.colour_bar = QLabel()
        self.colour_bar.setToolTip("Saliency colour scale: blue = least, red = most evidence for the label")
        self.colour_bar_ends = QLabel("low ◀ saliency (share of the map's maximum) ▶ high")
        self.colour_bar_ends.setStyleSheet("QLabel { color: gray; }")
        self.caption = QLabel("")
        self.caption.setWordWrap(True)
        self.caption.setStyleSheet("QLabel { color: gray; }")
        for widget in (self.colour_bar, self.colour_bar_ends, self.caption):
            widget.hide()
            layout.addWidget(widget)
        self.similar_title = QLabel("Most similar training images (by the image encoder's embedding), with their labels:")
        self.similar_title.setWordWrap(True)
        self.similar_title.setStyleSheet("QLabel { color: gray; }")
        self.similar_row = QHBoxLayout()
        self.similar_images: list[QLabel] = []
        for _ in range(3):
            thumb = QLabel()
            thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.similar_images.append(thumb)
            self.similar_row.addWidget(thumb)
        self.similar_row.addStretch(1)
        layout.addWidget(self.similar_title)
        layout.addLayout(self.similar_row)
        self._show_similar([])

        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Overlay opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setEnabled(False)
        opacity_row.addWidget(self.opacity)
        layout.addLayout(opacity_row)
        self.export_button = QPushButton("Export result (DICOM SEG/SR)…")
        self.export_button.setEnabled(False)
        layout.addWidget(self.export_button)
        self.disclaimer = QLabel("Research use only; not a medical device.")
        self.disclaimer.setStyleSheet("QLabel { color: gray; }")
        layout.addWidget(self.disclaimer)
        layout.addStretch(1)

        self.analyse_button.clicked.connect(self._request)
        self.series_button.clicked.connect(self._request_series)
        self.run_anyway_button.clicked.connect(self._request_run_anyway)
        self._withheld_task: str | None = None
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        self.opacity.valueChanged.connect(lambda value: self.opacity_changed.emit(value / 100.0))
        self.export_button.clicked.connect(self._ask_export)

    def _request(self) -> None:
        spacing = self.spacing.value()
        self.analyse_requested.emit(self.model_choice.currentData(), spacing if spacing > 0 else None)

    def _request_run_anyway(self) -> None:
        spacing = self.spacing.value()
        if self._withheld_task is not None:
            self.run_anyway_requested.emit(self._withheld_task, spacing if spacing > 0 else None)

    def _request_series(self) -> None:
        spacing = self.spacing.value()
        self.analyse_series_requested.emit(self.model_choice.currentData(), spacing if spacing > 0 else None)

    def show_series(self, result) -> None:
        self.series_summary.setText(f"Series ({result.model}): {result.summary}")
        self.series_summary.show()

    def _ask_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export the analysis to a folder")
        if folder:
            self.export_requested.emit(folder)

    # ------------------------------------------------------------- controller -> view
    def set_running(self, text: str) -> None:
        self.analyse_button.setEnabled(False)
        self.series_button.setEnabled(False)
        if "series" not in text:
            self.series_summary.hide()
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.progress.setFormat(text)
        self.progress.show()

    def set_progress(self, progress) -> None:
        if progress.fraction is not None:
            self.progress.setValue(int(progress.fraction * 100))
        if progress.message:
            self.progress.setFormat(f"{progress.message} (%p%)")

    def set_idle(self) -> None:
        self.analyse_button.setEnabled(True)
        self.series_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.hide()

    def set_user_models(self, names: list[str]) -> None:
        """Offer the user's adapted image models (found in the registry by manifest) after the shipped ones."""
        current = self.model_choice.currentData()
        for index in reversed(range(self.model_choice.count())):
            if str(self.model_choice.itemData(index)).startswith(USER_MODEL):
                self.model_choice.removeItem(index)
        for name in names:
            self.model_choice.addItem(f"{name} (my model)", USER_MODEL + name)
        found = self.model_choice.findData(current)
        self.model_choice.setCurrentIndex(max(found, 0))

    def show_outcome(self, outcome, wall_ms: float | None = None) -> None:
        self.headline.setText(outcome.headline)
        lines = [f"Model: {outcome.model} {outcome.model_version}"]
        if outcome.details.get("choice_note"):
            lines.append(outcome.details["choice_note"])
        saliency_shown = outcome.task == "classify" and not outcome.withheld
        if outcome.task.startswith(USER_MODEL):
            lines[0] += " (your model: the image encoder + a head trained on your labels)"
            if outcome.withheld:
                lines.append("No answer is shown for an image unlike the ones the model was trained on.")
            elif "probabilities" in outcome.details:
                lines.append("Probabilities: " + ", ".join(f"{k} {v:.3f}" for k, v in outcome.details["probabilities"].items()))
                lines.append(f"Conformal set: {{{', '.join(outcome.details['prediction_set'])}}}")
            else:
                low, high = outcome.details["interval"]
                lines.append(f"Value {outcome.details['value']:.4g}, conformal interval {low:.4g} – {high:.4g}")
            lines.append("In the model's domain: " + ("yes" if outcome.details.get("in_domain") else "no"))
        elif outcome.task == "classify" and not outcome.withheld:
            probabilities = outcome.details.get("probabilities", {})
            lines.append("Calibrated probabilities: " + ", ".join(f"{k} {v:.3f}" for k, v in probabilities.items()))
            prediction_set = outcome.details.get("prediction_set")
            if prediction_set:
                coverage = outcome.details.get("set_coverage") or 0.9
                lines.append(f"{coverage:.0%} conformal set: {{{', '.join(prediction_set)}}} "
                             f"(contains the true label for {coverage:.0%} of held-out X-rays)")
            lines.append("Overlay: class activation map (saliency) for the predicted label")
        elif outcome.withheld:
            lines.append("No label, probability or overlay is shown for an image the model was not made for.")
        else:
            measurements = outcome.details.get("measurements", {})
            for key, label, unit in (("head_circumference_mm", "Head circumference", "mm"),
                                     ("biparietal_diameter_mm", "Biparietal diameter", "mm"),
                                     ("occipitofrontal_diameter_mm", "Occipitofrontal diameter", "mm")):
                if key in measurements:
                    lines.append(f"{label}: {measurements[key]:.1f} {unit}")
            source = outcome.details.get("pixel_spacing_source")
            lines.append(f"Pixel spacing: {'from the DICOM file' if source == 'dicom' else 'entered by you' if source == 'user' else 'none (no mm values)'}")
        provider = outcome.provider + (f" ({'; '.join(outcome.provider_notes)})" if outcome.provider_notes else "")
        lines.append(f"Runs on: {provider}")
        latency = f"Latency: {outcome.latency_ms:.1f} ms (preprocessing + model)"
        if wall_ms is not None:
            latency += f", {wall_ms:.0f} ms end to end"
        lines.append(latency)
        self.details.setText("\n".join(lines))
        if outcome.scope_reasons:
            intro = ("Run anyway on an image outside the model's scope; do not rely on this result:"
                     if outcome.forced else "Answer withheld: this image is outside what the model was made for:")
            self.warning.setText(intro + "\n• " + "\n• ".join(outcome.scope_reasons))
            self.warning.show()
        else:
            self.warning.hide()
        self._withheld_task = outcome.task if outcome.withheld else None
        self.run_anyway_button.setVisible(outcome.withheld)
        self._show_colour_scale(outcome if saliency_shown else None)
        self._show_similar(outcome.details.get("nearest_examples", []) if saliency_shown else [])
        self.opacity.setEnabled(outcome.overlay_rgba is not None)
        self.export_button.setEnabled(not outcome.withheld and not outcome.task.startswith(USER_MODEL))
        self.layout().activate()  # word-wrapped labels need a fresh layout pass for their new height

    def _show_similar(self, examples) -> None:
        self.similar_title.setVisible(bool(examples))
        self.similar_title.setText("Most similar training images (nearest by the image encoder's embedding), left to "
                                   "right: " + ", ".join(label for _, label in examples))
        for thumb, example in zip(self.similar_images, list(examples) + [None] * 3):
            if example is None:
                thumb.hide()
                continue
            pixels, label = example
            grey = QImage(pixels.data, pixels.shape[1], pixels.shape[0], pixels.strides[0], QImage.Format.Format_Grayscale8)
            thumb.setPixmap(QPixmap.fromImage(grey.copy()).scaled(64, 64, Qt.AspectRatioMode.KeepAspectRatio,
                                                                    Qt.TransformationMode.SmoothTransformation))
            thumb.setToolTip(label)
            thumb.show()

    def _show_colour_scale(self, outcome) -> None:
        if outcome is None:
            for widget in (self.colour_bar, self.colour_bar_ends, self.caption):
                widget.hide()
            return
        rgb = outcome.details["colour_scale"]
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], rgb.strides[0], QImage.Format.Format_RGB888).copy()
        self.colour_bar.setPixmap(QPixmap.fromImage(image))
        self.caption.setText(outcome.details.get("saliency_caption", ""))
        for widget in (self.colour_bar, self.colour_bar_ends, self.caption):
            widget.show()

    def show_problem(self, text: str) -> None:
        self.headline.setText("Analysis failed")
        self.details.setText(text)
        self.warning.hide()
        self.run_anyway_button.hide()
        self._show_colour_scale(None)
        self._show_similar([])

    def show_cancelled(self) -> None:
        self.headline.setText("Analysis cancelled")
        self.details.setText("")


def install_image_analysis(workspace, analysis) -> AnalysisPanel:
    """Put the panel into the Images workspace and wire it to ``analysis`` (an
    ImageAnalysisController over the workspace's images controller). Overlays go onto the
    active viewport and are cleared when another image comes on screen."""
    panel = AnalysisPanel()
    workspace.add_side_panel(PANEL_TITLE, panel, label="AI")
    state = {"viewport": None}

    def clear_overlays(*_args, force: bool = True) -> None:
        viewport = state["viewport"]
        if viewport is None:
            return
        if not force and analysis.result_is_on_screen():
            return  # the same image was shown again (e.g. the series finished loading): keep it
        for name in OVERLAY_NAMES:
            viewport.set_overlay(name, None)
        viewport.remove_shape_overlay(SHAPE_NAME)
        state["viewport"] = None

    def on_result(outcome) -> None:
        panel.set_idle()
        panel.show_outcome(outcome, analysis.last_wall_ms)
        clear_overlays()
        if outcome.overlay_rgba is None:  # withheld: nothing is drawn over the image
            return
        if not analysis.result_is_on_screen():
            panel.details.setText(panel.details.text() + "\nThe image on screen changed while the model ran, "
                                  "so no overlay is drawn; run Analyse again on this image.")
            return
        viewport = workspace.active_viewport()
        try:
            viewport.set_overlay(outcome.overlay_name, outcome.overlay_rgba, panel.opacity.value() / 100.0)
        except ValueError as exc:  # the image on screen changed while the model ran
            panel.show_problem(f"The result no longer matches the image on screen ({exc}); run Analyse again.")
            return
        if outcome.contour_xy:
            viewport.add_shape_overlay(SHAPE_NAME, outcome.contour_xy, outcome.contour_label)
        state["viewport"] = viewport
        state["overlay"] = outcome.overlay_name

    def on_opacity(value: float) -> None:
        viewport = state["viewport"]
        if viewport is not None:
            viewport.set_overlay_opacity(state["overlay"], value)

    adaptation = analysis.images.adaptation
    adaptation.models_changed.connect(lambda entries: panel.set_user_models(adaptation.user_models(entries)))
    adaptation.refresh()  # the first listing may have gone out before this panel existed
    panel.analyse_requested.connect(lambda choice, spacing: analysis.analyse(choice, spacing))
    panel.analyse_series_requested.connect(lambda choice, spacing: analysis.analyse_series(choice, spacing))
    panel.run_anyway_requested.connect(lambda task, spacing: analysis.analyse(task, spacing, force=True))
    panel.cancel_requested.connect(analysis.cancel)
    analysis.series_result.connect(panel.show_series)
    panel.export_requested.connect(lambda folder: analysis.export(folder))
    panel.opacity_changed.connect(on_opacity)
    analysis.started.connect(panel.set_running)
    analysis.progress.connect(panel.set_progress)
    analysis.result.connect(on_result)
    analysis.failed.connect(lambda text: (panel.set_idle(), panel.show_problem(text)))
    analysis.cancelled.connect(lambda: (panel.set_idle(), panel.show_cancelled()))
    analysis.finished.connect(panel.set_idle)
    analysis.exported.connect(lambda paths: panel.details.setText(panel.details.text() + "\nExported: " + ", ".join(paths)))
    analysis.images.current_image_changed.connect(lambda *_args: clear_overlays(force=False))
    panel.analysis = analysis  # keep the controller alive with its panel
    return panel
