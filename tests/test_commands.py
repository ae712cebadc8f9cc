"""The command lines (cxr-edge, python -m train, python -m convert and its bundle amenders) behave as one
family: every command has help and a place in the docs, --version, the same error line, exit 130 on Ctrl-C,
NaN refused."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")

from convert import add_gate, add_views  # noqa: E402
from convert import cli as convert_cli  # noqa: E402
from cxr_edge import __version__  # noqa: E402
from cxr_edge import cli as edge_cli  # noqa: E402
from train import cli as train_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: The commands that amend a shipped bundle (``python -m convert.add_gate|add_views MODEL``).
AMENDERS = {"python -m convert.add_gate": add_gate, "python -m convert.add_views": add_views}
CLIS = {"cxr-edge": edge_cli.main, "python -m train": train_cli.main, "python -m convert": convert_cli.main,
        **{prog: module.main for prog, module in AMENDERS.items()}}


def commands() -> list[tuple[str, str, click.Command]]:
    """(program, the words that run it, command) for every command of the three command lines."""
    found = []
    for prog, main in CLIS.items():
        if isinstance(main, click.Group):
            found += [(prog, f"{prog} {name}", command) for name, command in sorted(main.commands.items())]
        else:
            found.append((prog, prog, main))
    return found


def docs_text() -> str:
    return "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


@pytest.mark.parametrize("prog, words, command", commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_and_is_named_in_the_docs(prog, words, command):
    assert (command.help or "").strip(), f"{words} has no help text"
    assert re.search(re.escape(words) + r"\b", docs_text()), f"{words} is named nowhere in README.md or docs/*.md"


@pytest.mark.parametrize("prog", CLIS)
def test_every_command_line_says_its_version(prog):
    result = CliRunner().invoke(CLIS[prog], ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_ctrl_c_exits_130_with_one_line_in_train_and_convert(monkeypatch, tmp_path):
    from convert import pipeline
    from train import report

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write_report", interrupted)
    result = CliRunner().invoke(train_cli.main, ["evaluate", str(tmp_path)])
    assert result.exit_code == 130 and "python -m train: error: interrupted" in result.output

    source = SimpleNamespace(keras_path=None, spec=None, calib_samples=(), calib_source="", parity_samples=(),
                             parity_source="")
    monkeypatch.setattr(convert_cli, "_source", lambda *args: (source, None))
    monkeypatch.setattr(pipeline, "Job", lambda **kwargs: None)
    monkeypatch.setattr(pipeline, "run", interrupted)
    result = CliRunner().invoke(convert_cli.main, [str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 130 and "python -m convert: error: interrupted" in result.output


@pytest.mark.parametrize("prog", AMENDERS)
def test_ctrl_c_exits_130_with_one_line_in_the_bundle_amenders(prog, monkeypatch, tmp_path):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(AMENDERS[prog], "load_bundle", interrupted)
    result = CliRunner().invoke(CLIS[prog], ["pneumonia", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 130 and f"{prog}: error: interrupted" in result.output


@pytest.mark.parametrize("prog", AMENDERS)
def test_a_bundle_amender_says_bad_input_in_the_family_s_error_line(prog, tmp_path):
    result = CliRunner().invoke(CLIS[prog], [str(tmp_path / "nowhere.json"), "--data", str(tmp_path),
                                             "--out", str(tmp_path / "out")])
    assert result.exit_code == 3 and f"{prog}: error: " in result.output and "nowhere.json" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("prog", AMENDERS)
def test_a_bundle_amender_refuses_a_split_that_is_not_the_bundle_s_run_s(prog, tmp_path, binary_model, copy_bundle):
    """The split is remade from --seed and --val-fraction: other patients than the manifest's are refused."""
    from train_data import make_kermany

    manifest = copy_bundle(binary_model, tmp_path / "bundle")
    record = json.loads(manifest.read_text())
    record["training_run"] = {**record.get("training_run", {}), "validation_patients": "0" * 16}
    manifest.write_text(json.dumps(record))
    data = make_kermany(tmp_path / "data", n_patients=6)
    result = CliRunner().invoke(CLIS[prog], [str(manifest), "--data", str(data), "--out", str(tmp_path / "out")])
    assert result.exit_code == 3 and f"{prog}: error: the split remade from seed 42" in result.output
    assert "give the run's --seed and --val-fraction" in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("main, args", [
    (convert_cli.main, ["model.keras", "--out", "o", "--threshold", "nan"]),
    (train_cli.main, ["fit", "--data", "d", "--out", "o", "--lr", "nan"]),
    (add_gate.main, ["pneumonia", "--data", ".", "--out", "o", "--val-fraction", "nan"]),
    (add_views.main, ["pneumonia", "--data", ".", "--out", "o", "--target-sensitivity", "nan"]),
])
def test_a_float_option_refuses_nan(main, args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "not a number" in result.output


@pytest.mark.parametrize("prog, words, command", commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_help_ends_with_an_example_to_copy(prog, words, command):
    with click.Context(command, info_name=words) as ctx:
        text = command.get_help(ctx).rstrip()
    tail = text[text.rfind("Example"):]
    assert tail.startswith("Example") and tail.splitlines()[-1].strip().startswith(words), text[-400:]
