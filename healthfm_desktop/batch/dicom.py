"""`healthfm dicom scan | render | mpr | anonymize` (CLI.md): batch front end over core.imaging."""

from __future__ import annotations

import sys
import warnings
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from healthfm_desktop.batch.output import emit_json, report_bad_input
from healthfm_desktop.core.errors import UserFacingError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _quiet_pydicom() -> None:
    """pydicom warns (stderr) about every odd value it tolerates; our own messages say what
    matters, per file, so keep the batch output readable."""
    import logging

    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\..*")
    logging.getLogger("pydicom").setLevel(logging.ERROR)


def _progress_callback(label: str):
    """A stderr progress line only when stderr is a terminal (CLI.md general rules)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        filled = int(30 * done / total) if total else 0
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


# objects whose frames together are bigger than this are decoded frame by frame when checked
_WHOLE_OBJECT_BYTES = 128 * 1024**2


def _stored_bytes(instance) -> int:
    return instance.rows * instance.columns * max(instance.samples_per_pixel, 1) * max(instance.bits_allocated // 8, 1) \
        * instance.number_of_frames


def _decode_problem(instance, outcome=None) -> tuple[str, str] | None:
    """``(path, reason)`` when an object does not decode to all its frames at its size."""
    from healthfm_desktop.core.imaging.decoding import decode_stored

    try:
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None and instance.number_of_frames > 1 and _stored_bytes(instance) > _WHOLE_OBJECT_BYTES:
            # a big multi-frame object is checked a frame at a time: memory stays at one frame
            for index in range(instance.number_of_frames):
                frame = decode_stored(instance, index)
                if frame.shape[0] != instance.rows:
                    return str(instance.source), f"decoded size {frame.shape} does not match Rows x Columns"
            return None
        arr = decode_stored(instance, None) if outcome is None else outcome
        single_ndim = 3 if instance.samples_per_pixel == 3 else 2
        frames = 1 if arr.ndim == single_ndim else arr.shape[0]
        if frames != instance.number_of_frames:
            return str(instance.source), f"decoded {frames} of {instance.number_of_frames} frames"
        if arr.shape[-2 if single_ndim == 2 else -3] != instance.rows:
            return str(instance.source), f"decoded size {arr.shape} does not match Rows x Columns"
    except UserFacingError as exc:
        return str(instance.source), str(exc)
    except Exception as exc:  # a decoder bug must not stop the scan
        return str(instance.source), f"pixel data could not be decoded ({type(exc).__name__}: {exc})"
    return None


def decode_problems(instances: list) -> list[tuple[str, str] | None]:
    """One cluster task of `dicom scan --scheduler`: decode a few objects."""
    _quiet_pydicom()
    return [_decode_problem(instance) for instance in instances]


_CLUSTER_CHUNK = 8  # objects decoded per cluster task


def _decode_failures(series_list, workers: int | None = None, scheduler: str | None = None) -> list[tuple[str, str]]:
    """Decode every frame of every object; ``(path, reason)`` for each object that fails."""
    from healthfm_desktop.core.imaging.series import default_decode_processes

    instances = list(OrderedDict((id(i), i) for s in series_list for i in s.instances).values())
    if scheduler:
        from healthfm_desktop.core.cluster import chunked, map_ordered

        chunks = map_ordered(decode_problems, list(chunked(instances, _CLUSTER_CHUNK)), scheduler=scheduler,
                             label="decode")
        return [problem for chunk in chunks for problem in chunk if problem is not None]

    from healthfm_desktop.core.imaging.parallel_decode import decode_objects_in_processes, process_pool_available

    processes = workers or default_decode_processes()
    if processes > 1 and len(instances) >= 8 and process_pool_available():
        # the command line runs no other thread: forked workers put every core on the codecs
        failures = []
        for instance, outcome in decode_objects_in_processes(instances, processes):
            problem = _decode_problem(instance, outcome)
            if problem is not None:
                failures.append(problem)
        return failures
    with ThreadPoolExecutor(max_workers=processes) as pool:
        return [r for r in pool.map(_decode_problem, instances) if r is not None]


def _group_by_uid(result):
    groups: OrderedDict[str, list] = OrderedDict()
    for s in result.series:
        groups.setdefault(s.series_uid, []).append(s)
    return groups


def scan(args) -> int:
    _quiet_pydicom()
    from healthfm_desktop.core.imaging.scanning import scan_paths

    result = scan_paths(args.paths, progress=_progress_callback("indexing"))
    failures = _decode_failures(result.series, scheduler=getattr(args, "scheduler", None))
    failed_paths = {path for path, _ in failures}
    exit_code = EXIT_OK
    for uid, stacks in _group_by_uid(result).items():
        first = stacks[0]
        instances = [i for s in stacks for i in s.instances]
        record = {
            "study_uid": first.study_uid,
            "series_uid": uid,
            "modality": first.modality,
            "description": first.description,
            "instances": len(instances),
            "frames": sum(s.frame_count for s in stacks),
            "rows": first.rows,
            "columns": first.columns,
            "transfer_syntaxes": sorted({ts for s in stacks for ts in s.transfer_syntaxes}),
            "decodable": not any(str(i.source) in failed_paths for i in instances),
            "stacks": len(stacks),
            "notes": [n for s in stacks[:1] for n in s.notes],
        }
        if not record["decodable"]:
            exit_code = EXIT_FAILED
        if args.json:
            emit_json(record)
        else:
            print(
                f"{record['modality'] or '--':3} {record['frames']:5d} frame(s) {record['rows']}x{record['columns']} "
                f"{'decodable' if record['decodable'] else 'NOT decodable'}  {uid}  {record['description']}"
            )
    for path, reason in failures:
        report_bad_input(path, reason)
    for path, reason in result.rejected:
        exit_code = EXIT_FAILED
        if args.json:
            emit_json({"path": path, "error": reason})
        report_bad_input(path, reason)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    return exit_code


def _find_stacks(path: str, uid: str):
    from healthfm_desktop.core.imaging.scanning import scan_paths

    result = scan_paths([path])
    stacks = result.find_series(uid)
    if not stacks:
        for bad_path, reason in result.rejected:
            report_bad_input(bad_path, reason)
        known = sorted({s.series_uid for s in result.series})
        hint = f" (series there: {', '.join(known[:5])}{'...' if len(known) > 5 else ''})" if known else " (no readable image there)"
        raise UserFacingError(f"{path}: no series {uid}{hint}")
    return stacks


def render(args) -> int:
    _quiet_pydicom()
    from healthfm_desktop.core.imaging.display import Window, apply_voi_lut_sequence, apply_window, default_window
    from healthfm_desktop.core.imaging.export import save_png

    if args.index < 0:
        print("healthfm dicom render: --index must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    if args.window is not None and not (np.isfinite(args.window).all() and args.window[1] >= 1):
        print("healthfm dicom render: --window needs a finite CENTER and a WIDTH of at least 1", file=sys.stderr)
        return EXIT_USAGE
    stacks = _find_stacks(args.path, args.series)
    # --index counts through the series in display order, stack after stack
    index = args.index
    for series in stacks:
        if index < series.frame_count:
            break
        index -= series.frame_count
    else:
        total = sum(s.frame_count for s in stacks)
        raise UserFacingError(f"--index {args.index} out of range: series {args.series} has {total} frame(s) (0-{total - 1})")
    try:
        pixels = series.load_frame(index)
    except UserFacingError as exc:
        raise UserFacingError(f"{series.frames[index].instance.source}: {exc}") from exc
    if pixels.ndim == 3:
        image = pixels
    else:
        frame = series.frames[index]
        if args.window is not None:
            y = apply_window(pixels, Window(args.window[0], args.window[1]))
        elif frame.voi_lut_dataset is not None and not frame.window_centers:
            y = apply_voi_lut_sequence(pixels, frame.voi_lut_dataset)
        else:
            y = apply_window(pixels, default_window(frame, pixels))
        image = np.floor(y + 0.5).astype(np.uint8)
        if frame.instance.photometric == "MONOCHROME1":
            image = 255 - image
    save_png(image, args.out)
    return EXIT_OK


def mpr(args) -> int:
    _quiet_pydicom()
    from healthfm_desktop.core.imaging.display import Window, apply_window, windows_from_file
    from healthfm_desktop.core.imaging.export import save_png
    from healthfm_desktop.core.imaging.mpr import build_volume, square_pixels

    stacks = _find_stacks(args.path, args.series)
    series = max(stacks, key=lambda s: s.frame_count)
    volume = build_volume(series)
    for note in volume.notes:
        print(f"note: {note}", file=sys.stderr)
    count = volume.plane_count(args.plane)
    index = count // 2 if args.index is None else args.index
    if not 0 <= index < count:
        raise UserFacingError(f"--index {index} out of range: the {args.plane} plane has {count} slice(s) (0-{count - 1})")
    plane, spacing = volume.plane_image(args.plane, index)
    middle = series.frames[series.frame_count // 2]
    windows = windows_from_file(middle)
    window = windows[0] if windows else Window.from_range(float(plane.min()), float(plane.max()))
    plane = square_pixels(plane, spacing)
    image = np.floor(apply_window(plane, window) + 0.5).astype(np.uint8)
    if series.photometric == "MONOCHROME1":
        image = 255 - image
    save_png(image, args.out)
    return EXIT_OK


def anonymize(args) -> int:
    _quiet_pydicom()
    from healthfm_desktop.core.imaging.anonymise import anonymise_paths

    report = anonymise_paths(args.paths, args.out, progress=_progress_callback("de-identifying"),
                             scheduler=getattr(args, "scheduler", None))
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path, reason in report.rejected:
        report_bad_input(path, reason)
    summary = f"{len(report.written)} file(s) de-identified into {args.out}"
    if report.burned_in:
        # CLI.md defines no option to refuse or confirm: export, warn, and say so in the summary
        # (each such file also records it in its De-identification Method)
        summary += (f"; {len(report.burned_in)} may show burned-in identifying text "
                    "(pixels are not cleaned: review them before sharing)")
    print(summary)
    return EXIT_FAILED if report.rejected else EXIT_OK
