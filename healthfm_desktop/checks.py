"""The offline checks behind `healthfm self-test` and Tools > Self-test: every shipped model
verifies its sha256 and runs once on bundled sample data; each workspace's core path runs once
on the bundled samples; the traps of a frozen bundle (spaCy registries, RDKit data, DICOM codec
plugins, worker processes) are probed. Only core is called (no command-line module); the GUI
check is added by `selftest`."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

Check = tuple[str, Callable[[], str]]
Result = tuple[str, bool, str, float]  # label, passed, what it found (or why it failed), seconds
DOMAINS = ("dicom", "images", "notes", "molecules", "patients", "pacs")
# The checks that import spaCy and medspaCy and build the notes pipeline, and the one that builds
# the structural-alert catalogue, run in one worker process beside the rest: on two cores the
# self-test then takes about the longer half, not the sum.
IN_WORKER_PROCESS = frozenset({"spaCy/medspaCy registries", "notes pipeline", "model ner_clinical", "molecules describe"})


def _check_onnxruntime() -> str:
    from healthfm_desktop.core.config import read_setting
    from healthfm_desktop.core.inference.runtime import choose_providers, probe_provider

    if not probe_provider("CPUExecutionProvider"):
        raise RuntimeError("the CPU execution provider does not run")
    choice = choose_providers(read_setting("inference/provider"))
    return f"active provider {choice.active}" + (f" ({'; '.join(choice.notes)})" if choice.notes else "")


def _check_spacy_registry() -> str:
    """The factories the notes pipeline is built from are registered (in a frozen bundle spaCy's
    entry points can go missing); the pipeline itself runs in the notes check."""
    import healthfm_desktop.core.records  # noqa: F401 - first, so it defers nltk (see its __init__)
    import medspacy  # noqa: F401 - registers medspaCy's factories
    import spacy
    from spacy.language import Language

    from healthfm_desktop.core.records import pipeline  # noqa: F401 - registers ours

    wanted = ("healthfm_sentences", "healthfm_entities", "medspacy_context", "medspacy_sectionizer")
    missing = [name for name in wanted if not Language.has_factory(name)]
    if missing:
        raise RuntimeError("spaCy factories not registered: " + ", ".join(missing))
    tokens = len(spacy.blank("en")("No evidence of pneumonia."))
    return f"spaCy {spacy.__version__} tokenizes ({tokens} tokens); factories {', '.join(wanted)} registered"


def _check_rdkit_data() -> str:
    from rdkit.Chem import Descriptors

    fragment_descriptors = [n for n, _ in Descriptors.descList if n.startswith("fr_")]
    if len(fragment_descriptors) < 80:
        raise RuntimeError(f"only {len(fragment_descriptors)} fr_* descriptors: RDKit's Data folder is missing")
    return f"{len(Descriptors.descList)} descriptors, {len(fragment_descriptors)} fr_*"


def _check_dicom_codecs() -> str:
    from pydicom.pixels import get_decoder
    from pydicom.uid import (
        HTJ2KLossless,
        JPEG2000Lossless,
        JPEGBaseline8Bit,
        JPEGLSLossless,
        RLELossless,
    )

    missing = [
        str(uid.name)
        for uid in (JPEGBaseline8Bit, JPEGLSLossless, JPEG2000Lossless, HTJ2KLossless, RLELossless)
        if not get_decoder(uid).is_available
    ]
    if missing:
        raise RuntimeError("no decoder plugin for " + ", ".join(missing))
    return "JPEG, JPEG-LS, JPEG 2000, HTJ2K and RLE decoders available"


def _check_samples() -> str:
    from healthfm_desktop.core.paths import samples_dir
    from healthfm_desktop.core.routing import route_paths

    folder = samples_dir()
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "README.md") if folder.is_dir() else []
    if not entries:
        raise RuntimeError(f"no bundled samples in {folder}")
    routing = route_paths(entries)
    if routing.rejected:
        raise RuntimeError("samples not recognised: " + ", ".join(p.name for p, _ in routing.rejected))
    return ", ".join(f"{len(v)} {k}" for k, v in sorted(routing.by_workspace.items()))


def _samples(kind: str) -> Path:
    from healthfm_desktop.core.paths import samples_dir

    folder = Path(samples_dir()) / kind
    if not folder.is_dir():
        raise RuntimeError(f"no bundled {kind} samples in {folder}")
    return folder


def _dicom_sample_series():
    from healthfm_desktop.core.imaging.scanning import scan_paths

    entries = sorted(p for p in _samples("dicom").iterdir() if p.name != "README.md" and not p.name.startswith("."))
    result = scan_paths(entries)
    if not result.series:
        raise RuntimeError("no series found in the bundled DICOM samples")
    if result.rejected:
        raise RuntimeError("samples rejected: " + "; ".join(f"{Path(p).name}: {r}" for p, r in result.rejected))
    return result.series


# ---- DICOM -------------------------------------------------------------------------------------
def _check_dicom_samples() -> str:
    """Scan the bundled DICOM samples, decode every frame, render one."""
    from healthfm_desktop.core.imaging.decoding import decode_stored
    from healthfm_desktop.core.imaging.display import render_frame

    series = _dicom_sample_series()
    for one in series:
        for instance in one.instances:
            pixels = decode_stored(instance, None)
            if pixels.shape[-2] != instance.rows and pixels.shape[-3:-1] != (instance.rows, instance.columns):
                raise RuntimeError(f"{Path(str(instance.source)).name}: decoded size {pixels.shape} is not Rows x Columns")
    image = render_frame(series[0], 0)
    if image.dtype != np.uint8 or image.size == 0:
        raise RuntimeError("rendering the first sample failed")
    frames = sum(s.frame_count for s in series)
    return f"{len(series)} series, {frames} frames decoded, transfer syntaxes " + ", ".join(
        sorted({ts for s in series for ts in s.transfer_syntaxes}))


def _check_deidentify() -> str:
    """One sample through the PS3.15 Basic Profile (the table comes from dicom-anonymizer and
    highdicom at run time, so a bundle missing either fails here, not at export)."""
    import pydicom

    from healthfm_desktop.core.imaging.anonymise import anonymise_series

    series = _dicom_sample_series()[0]
    with tempfile.TemporaryDirectory(prefix="healthfm-selftest-") as out:
        report = anonymise_series(series, out)
        if report.rejected or not report.written:
            raise RuntimeError("de-identification wrote nothing: " + "; ".join(r for _, r in report.rejected))
        original = pydicom.dcmread(series.instances[0].source.path, stop_before_pixels=True)
        result = pydicom.dcmread(report.written[0], stop_before_pixels=True)
        if result.get("PatientIdentityRemoved") != "YES" or result.StudyInstanceUID == original.StudyInstanceUID:
            raise RuntimeError("the de-identified sample keeps its identity")
    return f"{len(report.written)} object(s) de-identified (PS3.15 Basic Profile)"


def _check_decode_workers() -> str:
    """The sample decoded by two worker processes equals the in-process decode (proves the
    fork-server pool runs here, which matters most inside the frozen bundle)."""
    from healthfm_desktop.core.imaging.decoding import decode_stored
    from healthfm_desktop.core.imaging.parallel_decode import DecodePool

    instances = _dicom_sample_series()[0].instances
    pool = DecodePool(2)
    try:
        if not pool.start():
            raise RuntimeError(f"decode worker processes do not start ({pool.failed})")
        decoded = list(pool.decode_instances(instances))
        if pool.failed:
            raise RuntimeError(f"decode workers broke ({pool.failed})")
    finally:
        pool.shutdown()
    for instance, frames in zip(instances, decoded):
        if isinstance(frames, BaseException):
            raise RuntimeError(f"a worker could not decode the sample: {frames}")
        if not np.array_equal(frames, decode_stored(instance, None)):
            raise RuntimeError("a worker's decode differs from the in-process decode")
    return f"{len(decoded)} objects decoded by 2 worker processes, equal to in-process (started in {pool.start_seconds:.2f} s)"


# ---- image models ------------------------------------------------------------------------------
def _agrees_with_float(int8_value: float, float_value: float, tolerance: float, what: str) -> None:
    """An INT8 variant runs on this CPU's integer kernels, which can differ from the machine it
    was measured on (saturating U8S8 arithmetic on AVX2 without VNNI, for one): on the sample it
    must give what its float model gives."""
    if abs(int8_value - float_value) > tolerance:
        raise RuntimeError(f"the INT8 variant gives {what} {int8_value:.3f} where its float model gives "
                           f"{float_value:.3f} on this CPU: do not use it here (Settings: turn INT8 off)")


def _classifier_check(quantized: bool) -> Callable[[], str]:
    def run() -> str:
        from healthfm_desktop.core.imaging.ai.classification import classify
        from healthfm_desktop.core.imaging.ai.models import default_classifier, load_model
        from healthfm_desktop.core.imaging.ai.preprocessing import read_image

        sample = _samples("images") / "chest_xray_pneumonia.dcm"
        result = classify(read_image(sample), load_model(default_classifier(), quantized=quantized))
        if quantized:
            _agrees_with_float(result.probabilities["pneumonia"],
                               classify(read_image(sample), load_model(default_classifier(), quantized=False)).probabilities["pneumonia"],
                               0.05, "p(pneumonia)")
        return (f"sha256 ok, says {result.label} (p={result.probability:.2f}) on {sample.name} in "
                f"{result.latency_ms:.1f} ms on {result.provider}")

    return run


def _segmenter_check(quantized: bool) -> Callable[[], str]:
    def run() -> str:
        from healthfm_desktop.core.imaging.ai.models import default_segmenter, load_model
        from healthfm_desktop.core.imaging.ai.preprocessing import read_image
        from healthfm_desktop.core.imaging.ai.segmentation import segment

        sample = _samples("images") / "fetal_head_ultrasound.dcm"
        result = segment(read_image(sample), None, load_model(default_segmenter(), quantized=quantized))
        if result.head_circumference_mm is None:
            raise RuntimeError(f"no head measured on {sample.name}")
        if quantized:
            reference = segment(read_image(sample), None, load_model(default_segmenter(), quantized=False))
            _agrees_with_float(result.head_circumference_mm, reference.head_circumference_mm or 0.0,
                               0.02 * (reference.head_circumference_mm or 1.0), "head circumference (mm)")
        return (f"sha256 ok, head circumference {result.head_circumference_mm:.1f} mm on {sample.name} in "
                f"{result.latency_ms:.1f} ms on {result.provider}")

    return run


# ---- notes -------------------------------------------------------------------------------------
def _sample_notes():
    from healthfm_desktop.core.records.notes_io import BadRecord, read_notes

    folder = _samples("notes")
    notes = [n for n in read_notes([folder]) if not isinstance(n, BadRecord)]
    if not notes:
        raise RuntimeError(f"no sample notes in {folder}")
    return notes


def _check_ner_model() -> str:
    from healthfm_desktop.core.records.ner_model import NerTagger

    words = _sample_notes()[0].text.split()[:64]
    tagger = NerTagger()
    start = time.perf_counter()
    tags = tagger.tag_rows([words])
    ms = (time.perf_counter() - start) * 1000
    if len(tags[0]) != len(words):
        raise RuntimeError("the tagger returned the wrong number of tags")
    named = sum(tag != 0 for tag in tags[0])  # tag 0 is "O"
    return f"sha256 ok, tagged {len(words)} words of a sample note ({named} in entities) on {tagger.provider.active} in {ms:.1f} ms"


def _check_notes_pipeline() -> str:
    from healthfm_desktop.core.records.pipeline import build_pipeline

    notes = _sample_notes()
    annotated = list(build_pipeline().annotate_many((n.id, n.text) for n in notes))
    spans = sum(len(n.entities) for n in annotated)
    negated = sum(e.negated for n in annotated for e in n.entities)
    if spans == 0:
        raise RuntimeError("the pipeline found no entity in the sample notes")
    return f"{len(annotated)} sample notes, {spans} spans ({negated} negated)"


# ---- molecules ---------------------------------------------------------------------------------
def _sample_molecules():
    from healthfm_desktop.core.chemistry.reading import read_molecules

    path = _samples("molecules") / "approved_drugs.sdf"
    records = [r for r in read_molecules(path) if r.ok]
    if not records:
        raise RuntimeError(f"no molecules in {path}")
    return records


def _molecule_model_check(name: str) -> Callable[[], str]:
    def run() -> str:
        from healthfm_desktop.core.chemistry.featurize import featurize_mols
        from healthfm_desktop.core.chemistry.predictors import MoleculeModel

        records = _sample_molecules()
        out = MoleculeModel(name).run(featurize_mols([r.mol for r in records]))
        if not np.all(np.isfinite(out)):
            raise RuntimeError("non-finite predictions on the bundled samples")
        if name.startswith("tox21") and not ((out >= 0) & (out <= 1)).all():
            raise RuntimeError("probabilities outside [0, 1]")
        if name.startswith("esol") and not (-12 < out.min() and out.max() < 3):
            raise RuntimeError(f"implausible logS range {out.min():.1f}..{out.max():.1f}")
        return f"sha256 ok, {len(records)} sample molecules, outputs {out.min():.2f}..{out.max():.2f}"

    return run


def _check_generator() -> str:
    """The SMILES model primed with pieces of a sample drug: valid molecules come out."""
    from healthfm_desktop.core.chemistry.analogues import GenerationReport, model_proposals

    seed = _sample_molecules()[0].mol
    report = GenerationReport()
    steps = model_proposals(seed, 64, report, np.random.default_rng(0))
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            proposals = stop.value
            break
    if report.model_samples == 0 or not proposals:
        raise RuntimeError("the SMILES model gave no valid molecule from a sample seed " + "; ".join(report.notes))
    return f"sha256 ok, {len(proposals)} valid of {report.model_samples} SMILES sampled from a sample drug"


def _check_describe() -> str:
    from healthfm_desktop.core.chemistry.properties import describe_mol

    rows = [describe_mol(r.mol) for r in _sample_molecules()]
    alerts = sum(1 for r in rows if r["alerts"])
    return f"properties and alerts of {len(rows)} samples ({alerts} with alerts)"


def _check_search() -> str:
    from healthfm_desktop.core.chemistry.search_index import build_index

    records = _sample_molecules()
    with tempfile.TemporaryDirectory() as tmp:
        index = build_index([_samples("molecules") / "approved_drugs.sdf"], tmp, workers=1)
        hits = index.similar(records[0].mol, top=1)
    if not hits or abs(hits[0].score - 1.0) > 1e-12:
        raise RuntimeError("a sample molecule does not find itself")
    return f"index of {index.size} samples, self-similarity 1.0"


# ---- patients ----------------------------------------------------------------------------------
def _check_patients() -> str:
    from healthfm_desktop.core.patients.reading import read_patient_file
    from healthfm_desktop.core.patients.risk import RiskModel

    files = sorted(p for p in _samples("patients").iterdir() if p.is_file() and p.name != "README.md")
    if not files:
        raise RuntimeError("no bundled patient samples in resources/samples/patients")
    model = RiskModel()
    start = time.perf_counter()
    scored = 0
    for path in files:
        cohort = read_patient_file(path)
        if cohort.bad_rows:
            raise RuntimeError(f"{path.name}: {len(cohort.bad_rows)} bad rows")
        risks = model.score(cohort.records)
        if not ((risks > 0) & (risks < 1)).all():
            raise RuntimeError(f"{path.name}: risk outside (0, 1)")
        scored += len(cohort.records)
        assessment = model.assess(cohort.records[0])
        if not assessment.contributions or len(assessment.trajectory) != 4:
            raise RuntimeError(f"{path.name}: no explanation or trajectory")
    ms = (time.perf_counter() - start) * 1000
    return (f"sha256 ok, {scored} sample stays from {len(files)} files read, scored and explained in {ms:.0f} ms "
            f"on {model.provider}")


# ---- foundation encoders --------------------------------------------------------------------
def _check_image_encoder() -> str:
    import numpy as np

    from healthfm_desktop.core.foundation.images import embed_images
    from healthfm_desktop.core.imaging.ai.preprocessing import read_image

    xray = read_image(_samples("images") / "chest_xray_pneumonia.dcm")
    ultrasound = read_image(_samples("images") / "fetal_head_ultrasound.dcm")
    start = time.perf_counter()
    vectors = embed_images([xray, xray, ultrasound])
    ms = (time.perf_counter() - start) * 1000
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.isfinite(vectors).all() or not np.allclose(vectors[0], vectors[1]):
        raise RuntimeError("the same sample image gave two different embeddings")
    if float(unit[0] @ unit[2]) > 0.9:
        raise RuntimeError("the chest X-ray and the fetal ultrasound samples embed alike")
    return (f"sha256 ok, embedded chest_xray_pneumonia.dcm and fetal_head_ultrasound.dcm in {ms:.0f} ms "
            f"(cosine similarity between them {float(unit[0] @ unit[2]):.2f})")


def _check_text_encoder() -> str:
    import numpy as np

    from healthfm_desktop.core.foundation.encoders import load_encoder

    text = (_samples("notes") / "discharge_summary.txt").read_text(encoding="utf-8")
    sentences = [line.strip() for line in text.splitlines() if len(line.strip()) > 20][:8]
    start = time.perf_counter()
    vectors = load_encoder("text").embed(sentences)
    ms = (time.perf_counter() - start) * 1000
    if not np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3):
        raise RuntimeError("sentence embeddings are not unit length")
    return f"sha256 ok, embedded {len(sentences)} lines of a sample note in {ms:.0f} ms"


def _sample_model_checks() -> dict[str, Callable[[], str]]:
    """Per shipped model name, the check that runs it on bundled sample data."""
    from healthfm_desktop.core.chemistry.predictors import MOLECULE_MODELS
    from healthfm_desktop.core.imaging.ai.models import QUANTIZED_SUFFIX, default_classifier, default_segmenter

    classifier, segmenter = default_classifier(), default_segmenter()
    checks = {classifier: _classifier_check(False), classifier + QUANTIZED_SUFFIX: _classifier_check(True),
              segmenter: _segmenter_check(False), segmenter + QUANTIZED_SUFFIX: _segmenter_check(True),
              "ner_clinical": _check_ner_model, "smiles_generator": _check_generator, "icu_mortality": _check_patients,
              "image_encoder": _check_image_encoder, "text_encoder": _check_text_encoder}
    checks.update({name: _molecule_model_check(name) for name in MOLECULE_MODELS})
    return checks


def _verify_only(name: str) -> Callable[[], str]:
    def run() -> str:
        from healthfm_desktop.core.inference.registry import load_registry

        load_registry().verify(name)
        return "sha256 ok; no bundled sample for this model to run on"

    return run


def collect_checks() -> list[Check]:
    from healthfm_desktop.core.inference.registry import load_registry

    checks: list[Check] = [
        ("onnxruntime", _check_onnxruntime),
        ("spaCy/medspaCy registries", _check_spacy_registry),
        ("RDKit data", _check_rdkit_data),
        ("DICOM codecs", _check_dicom_codecs),
        ("bundled samples", _check_samples),
        ("DICOM samples scan + decode", _check_dicom_samples),
        ("DICOM de-identification", _check_deidentify),
        ("DICOM decode workers", _check_decode_workers),
        ("notes pipeline", _check_notes_pipeline),
        ("molecules describe", _check_describe),
        ("molecules search", _check_search),
    ]
    registry = load_registry()
    for name, problem in sorted(registry.problems.items()):
        checks.append((f"model {name}", lambda problem=problem: (_ for _ in ()).throw(RuntimeError(problem))))
    on_samples = _sample_model_checks()
    for name in registry.names():
        checks.append((f"model {name}", on_samples.get(name) or _verify_only(name)))
    return checks


def run_check(label: str, check: Callable[[], str]) -> Result:
    start = time.perf_counter()
    try:
        return label, True, check(), time.perf_counter() - start
    except Exception as exc:  # a self-test reports every failure and goes on
        return label, False, f"{type(exc).__name__}: {exc}", time.perf_counter() - start


def _worker_checks() -> dict[str, Callable[[], str]]:
    """The checks a worker process may run, by label (looked up without collect_checks, which
    imports every workspace's core)."""
    return {"spaCy/medspaCy registries": _check_spacy_registry, "notes pipeline": _check_notes_pipeline,
            "model ner_clinical": _check_ner_model, "molecules describe": _check_describe}


def _run_in_worker(labels: tuple[str, ...]) -> list[Result]:
    """Runs in the worker process: the checks named ``labels``, in that order."""
    by_label = _worker_checks()
    return [run_check(label, by_label[label]) for label in labels]


def run_checks(checks: list[Check], worker_process: bool = True) -> Iterator[Result]:
    """Every check's result: those of IN_WORKER_PROCESS on a worker process (``worker_process``)
    while the others run here, which come first. A worker that cannot start leaves all of them
    here; one that breaks is reported as a failed check and its checks are run here."""
    from healthfm_desktop.core import processes

    # only the checks the worker knows by that label (a model whose manifest has a problem gets
    # a check that reports it: that one stays here)
    known = _worker_checks()
    aside = tuple(label for label, check in checks if label in IN_WORKER_PROCESS and known.get(label) is check) if worker_process else ()
    pool = processes.process_pool(1, purpose="self-test") if aside else None
    future = None
    if pool is not None:
        try:
            future = pool.submit(_run_in_worker, aside)
        except RuntimeError:
            future = None
    try:
        for label, check in checks:
            if future is None or label not in aside:
                yield run_check(label, check)
        if future is not None:
            try:
                yield from future.result()
            except Exception as exc:  # the worker died or could not import: say so, then check here
                yield "self-test worker process", False, f"{type(exc).__name__}: {exc}", 0.0
                for label, check in checks:
                    if label in aside:
                        yield run_check(label, check)
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
