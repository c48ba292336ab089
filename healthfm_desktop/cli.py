"""The `healthfm` command line (contract: CLI.md in the shared folder): argparse over `core`.

Every subcommand of the contract is declared here, in one place. Each is carried out by a
function ``healthfm_desktop.batch.<domain>.<name>(args) -> int``; a command whose function does
not exist yet exits 2 with "not available yet". Qt is imported only for `gui` and `self-test`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from healthfm_desktop import __version__
from healthfm_desktop.core.errors import UserFacingError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _add_peer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--peer", required=True, metavar="HOST:PORT", help="the DICOM peer")
    parser.add_argument("--called-aet", required=True, metavar="AET", help="the peer's AE title")
    parser.add_argument("--calling-aet", metavar="AET", help="our AE title (default: from Settings)")


def _scheduler_address(text: str) -> str:
    from healthfm_desktop.core.cluster import check_address

    try:
        return check_address(text)
    except UserFacingError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def _add_scheduler(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", type=_scheduler_address, metavar="tcp://HOST:PORT",
                        help="run the work on this Dask distributed cluster (same output as locally)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthfm",
        description="HealthFM Desktop: offline medical AI workstation (images, notes, molecules, patients).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and the model set")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gui = sub.add_parser("gui", help="start the GUI, opening the given files, folders, zips or DICOMDIRs")
    gui.add_argument("paths", nargs="*", metavar="PATH")
    gui.add_argument("--demo", action="store_true", help="also open the bundled sample data")
    # for benchmarks/bench_startup.py and the bundle smoke test: show the window, then quit
    gui.add_argument("--quit-after-show", action="store_true", help=argparse.SUPPRESS)
    gui.set_defaults(handler="app:run_gui")

    selftest = sub.add_parser("self-test", help="offline self-check of models, workspaces and bundle")
    selftest.set_defaults(handler="selftest:run_self_test")

    # --- dicom ---------------------------------------------------------------------------
    dicom = sub.add_parser("dicom", help="index, render, reformat and de-identify DICOM").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = dicom.add_parser("scan", help="index files, folders, zips and DICOMDIRs into studies/series")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="JSON Lines on stdout")
    _add_scheduler(p)
    p.set_defaults(handler="batch.dicom:scan")

    p = dicom.add_parser("render", help="render one frame/slice of a series to PNG")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--series", required=True, metavar="UID")
    p.add_argument("--index", type=int, default=0, metavar="N", help="0-based, in display order")
    p.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"))
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.set_defaults(handler="batch.dicom:render")

    p = dicom.add_parser("mpr", help="reformat a volume series (axial/coronal/sagittal) to PNG")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--series", required=True, metavar="UID")
    p.add_argument("--plane", required=True, choices=["axial", "coronal", "sagittal"])
    p.add_argument("--index", type=int, metavar="N")
    p.add_argument("--out", required=True, metavar="FILE.png")
    p.set_defaults(handler="batch.dicom:mpr")

    p = dicom.add_parser("anonymize", help="de-identify (PS3.15 Annex E basic profile)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    _add_scheduler(p)
    p.set_defaults(handler="batch.dicom:anonymize")

    p = sub.add_parser("data-quality", help="what an import would find unreadable, out of range, duplicated or missing")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="batch.quality:report")

    # --- images --------------------------------------------------------------------------
    images = sub.add_parser("images", help="run the shipped image models").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = images.add_parser("classify", help="classify DICOM, PNG or JPEG images")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.add_argument("--saliency", metavar="DIR", help="write saliency heatmap PNGs here")
    p.add_argument("--force", action="store_true", help="give the answer even for images outside the model's scope (marked)")
    p.add_argument("--model", metavar="NAME", help="an image classifier by manifest name (shipped or user's)")
    _add_scheduler(p)
    p.set_defaults(handler="batch.images:classify")

    p = images.add_parser("segment", help="segment images and measure the result")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.add_argument("--pixel-spacing", type=float, metavar="MM", help="mm per pixel when the file has none")
    p.add_argument("--force", action="store_true", help="segment even images outside the model's scope (marked)")
    _add_scheduler(p)
    p.set_defaults(handler="batch.images:segment")

    # --- models and adaptation -------------------------------------------------------------
    models = sub.add_parser("models", help="the models the registry sees").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = models.add_parser("list", help="every model, shipped and user's, with its check")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="batch.adapt:list_models")

    adapt = sub.add_parser("adapt", help="teach an encoder your own labels").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = adapt.add_parser("train", help="embed labelled items, fit a head, save it as a user model")
    p.add_argument("--kind", required=True, choices=["image", "text", "molecule"])
    p.add_argument("--data", required=True, metavar="FILE")
    p.add_argument("--name", required=True, metavar="NAME")
    p.add_argument("--task", choices=["classification", "regression"], default="classification")
    p.add_argument("--label-column", default="label", metavar="COL")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="batch.adapt:train")
    p = adapt.add_parser("predict", help="run an adapted (or any user) model")
    p.add_argument("name", metavar="NAME")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")
    p.add_argument("--force", action="store_true", help="give the answer outside the model's domain too (marked)")
    _add_scheduler(p)
    p.set_defaults(handler="batch.adapt:predict")

    p = sub.add_parser("similar", help="nearest neighbours by the encoder's embedding")
    p.add_argument("--kind", required=True, choices=["image", "text", "molecule"])
    p.add_argument("--library", required=True, nargs="+", metavar="PATH")
    p.add_argument("--query", required=True, metavar="PATH_OR_SMILES")
    p.add_argument("--top", type=int, default=10, metavar="K")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="batch.adapt:similar")

    # --- notes ---------------------------------------------------------------------------
    notes = sub.add_parser("notes", help="clinical-note NLP").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = notes.add_parser("annotate", help="annotate UTF-8 notes (files or a JSONL of {id,text})")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--terms", metavar="FILE", help="one term a line, optionally term<TAB>LABEL")
    p.add_argument("--format", required=True, choices=["jsonl", "brat", "fhir"])
    p.add_argument("--out", required=True, metavar="OUT")
    _add_scheduler(p)
    p.set_defaults(handler="batch.notes:annotate")

    # --- molecules -----------------------------------------------------------------------
    molecules = sub.add_parser("molecules", help="chemistry: describe, predict, index, search").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = molecules.add_parser("describe", help="properties, rule filters and structural alerts")
    p.add_argument("file", metavar="FILE")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", metavar="CSV")
    out.add_argument("--json", action="store_true")
    p.add_argument("--time-budget", type=_positive_seconds, metavar="SECONDS",
                   help="stop a molecule that takes a worker process longer than this; its row gets the error "
                        "(default 10)")
    _add_scheduler(p)
    p.set_defaults(handler="batch.molecules:describe")

    p = molecules.add_parser("predict", help="run every shipped molecular model")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.add_argument("--force", action="store_true", help="give values outside a model's applicability domain too (marked)")
    _add_scheduler(p)
    p.set_defaults(handler="batch.molecules:predict")

    p = molecules.add_parser("index", help="build a similarity/substructure search index")
    p.add_argument("libraries", nargs="+", metavar="LIBRARY")
    p.add_argument("--out", required=True, metavar="INDEX")
    _add_scheduler(p)
    p.set_defaults(handler="batch.molecules:index")

    p = molecules.add_parser("search", help="similarity or substructure search")
    p.add_argument("library", metavar="LIBRARY")
    query = p.add_mutually_exclusive_group(required=True)
    query.add_argument("--similar", metavar="SMILES")
    query.add_argument("--substructure", metavar="SMARTS")
    p.add_argument("--threshold", type=float, metavar="T")
    p.add_argument("--top", type=int, metavar="K")
    p.add_argument("--json", action="store_true")
    _add_scheduler(p)
    p.set_defaults(handler="batch.molecules:search")

    # --- patients ------------------------------------------------------------------------
    patients = sub.add_parser("patients", help="ICU patient risk").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = patients.add_parser("risk", help="score patients from a long CSV patient_id,time,variable,value[,unit]")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    _add_scheduler(p)
    p.set_defaults(handler="batch.patients:risk")

    # --- pacs ----------------------------------------------------------------------------
    pacs = sub.add_parser("pacs", help="DICOM networking with a configured peer").add_subparsers(
        dest="subcommand", metavar="SUBCOMMAND", required=True
    )
    p = pacs.add_parser("echo", help="C-ECHO a DICOM peer")
    _add_peer(p)
    p.set_defaults(handler="batch.pacs:echo")

    p = pacs.add_parser("find", help="study-level C-FIND")
    _add_peer(p)
    p.add_argument("--patient-id", metavar="ID")
    p.add_argument("--patient-name", metavar="PATTERN")
    p.add_argument("--modality", metavar="M")
    p.add_argument("--study-date", metavar="YYYYMMDD[-YYYYMMDD]")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="batch.pacs:find")

    p = pacs.add_parser("get", help="retrieve a study by C-GET (or C-MOVE with --move-dest)")
    _add_peer(p)
    p.add_argument("--study-uid", required=True, metavar="UID")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--move-dest", metavar="AET")
    p.add_argument("--listen-port", type=int, metavar="P")
    p.set_defaults(handler="batch.pacs:get")

    p = pacs.add_parser("listen", help="run the C-STORE/C-ECHO SCP until SIGINT/SIGTERM")
    p.add_argument("--port", required=True, type=int, metavar="P")
    p.add_argument("--aet", metavar="AET", help="our AE title (default: Settings)")
    p.add_argument("--bind", metavar="ADDR", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--allow-calling-aet", action="append", default=[], metavar="AET",
                   help="accept only these calling AE titles (repeat the option)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="batch.pacs:listen")
    return parser


def _resolve(handler: str):
    """``module:function`` under healthfm_desktop, or None when that command is not built yet."""
    module_name, _, function_name = handler.partition(":")
    full_name = f"healthfm_desktop.{module_name}"
    if importlib.util.find_spec(full_name) is None:
        return None
    module = importlib.import_module(full_name)
    return getattr(module, function_name, None)


def version_text() -> str:
    from healthfm_desktop.core.inference.registry import load_registry

    registry = load_registry()
    models = ", ".join(f"{name} {registry.manifests[name].version}" for name in registry.names())
    return f"healthfm {__version__} (models: {models or 'none'})"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(version_text())
        return EXIT_OK
    if args.command is None:
        args = parser.parse_args(["gui"])
    handler = _resolve(args.handler)
    name = " ".join(filter(None, [args.command, getattr(args, "subcommand", None)]))
    if handler is None:
        print(f"healthfm {name}: not available yet", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args) or 0)
    except UserFacingError as exc:
        print(f"healthfm {name}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"healthfm {name}: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
