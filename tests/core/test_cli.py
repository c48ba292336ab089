"""The command line's shape (CLI.md): every subcommand exists, usage errors exit 2, user
errors exit 1 with `healthfm <cmd>: reason` and no traceback, --version names the models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from healthfm_desktop import cli
from healthfm_desktop.batch.output import emit_json
from healthfm_desktop.core.errors import UnreadableFileError

CONTRACT = {
    "dicom": ["scan", "render", "mpr", "anonymize"],
    "images": ["classify", "segment"],
    "notes": ["annotate"],
    "molecules": ["describe", "predict", "index", "search"],
    "patients": ["risk"],
    "pacs": ["echo", "find", "get"],
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "healthfm_desktop", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for command in ["gui", "self-test", *CONTRACT]:
        assert command in out.stdout


@pytest.mark.parametrize("group", sorted(CONTRACT))
def test_every_subcommand_of_the_contract_exists(group):
    parser = cli.build_parser()
    for sub in CONTRACT[group]:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([group, sub, "--help"])
        assert exit_info.value.code == 0


def test_every_handler_resolves():
    """Each declared subcommand is implemented (no "not available yet" left in a release)."""
    parser = cli.build_parser()
    missing = []
    for group, subs in CONTRACT.items():
        for sub in subs:
            action = next(a for a in parser._subparsers._group_actions if group in a.choices)
            handler = action.choices[group]._subparsers._group_actions[0].choices[sub].get_default("handler")
            if cli._resolve(handler) is None:
                missing.append(f"{group} {sub}")
    assert missing == []


def test_unbuilt_command_exits_2(monkeypatch, capsys):
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    args = parser.parse_args(["patients", "risk", "x.csv"])
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    args.handler = "batch.not_a_module:risk"
    assert cli.main([]) == 2
    assert "not available yet" in capsys.readouterr().err


def test_user_error_exits_1_without_traceback(monkeypatch, capsys):
    import types

    fake = types.ModuleType("healthfm_desktop.batch.fake")

    def explode(args):
        raise UnreadableFileError("scan.dcm: truncated file")

    fake.explode = explode
    monkeypatch.setitem(sys.modules, "healthfm_desktop.batch.fake", fake)
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: True)
    parser = cli.build_parser()
    args = parser.parse_args(["patients", "risk", "x.csv"])
    args.handler = "batch.fake:explode"
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv=None: args)
    assert cli.main([]) == 1
    err = capsys.readouterr().err
    assert "scan.dcm: truncated file" in err and "Traceback" not in err


def test_bad_usage_exits_2():
    out = run_cli("dicom", "render", "x.dcm")  # --series and --out missing
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_version_names_the_model_set():
    out = run_cli("--version")
    assert out.returncode == 0
    assert out.stdout.startswith("healthfm 0.1.0 (models:")


def test_json_lines_never_carry_nan(capsys):
    import numpy as np

    emit_json({"risk": float("nan"), "p": np.float32(0.25), "values": np.arange(2)})
    assert json.loads(capsys.readouterr().out) == {"risk": None, "p": 0.25, "values": [0, 1]}
