"""The command line: each subcommand end to end, and one clear line for every user error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlpvision
from mlpvision.cli import main
from mlpvision.models.zoo import describe_models, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def test_models_json_lists_every_model(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in sorted(rows, key=lambda r: r["name"])] == mlpvision.list_models()
    for r in rows:
        assert r["params"] > 0 and r["macs"] > 0


def test_models_table_and_pattern(capsys):
    assert main(["models", "resmlp_*"]) == 0
    out = capsys.readouterr().out
    assert "resmlp_12_224" in out and "mixer_s16_224" not in out


def test_readme_model_table_is_generated():
    text = README.read_text()
    start, end = "<!-- models:start -->\n", "<!-- models:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == markdown_table(describe_models()), "README model table is stale: run `make readme`"


def test_demo_classifies_test_images(capsys):
    assert main(["demo", "--num-images", "4"]) == 0
    out = capsys.readouterr().out
    assert "mixer_t4_28" in out and "correct" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["models", "nomatch_*"], "no model matches"),
        (["demo", "--model", "mixr_t4_28"], "unknown model 'mixr_t4_28'; did you mean mixer_t4_28"),
        (["demo", "--data-dir", "/nonexistent/folder"], "does not exist"),
    ],
)
def test_user_errors_are_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "mlpvision", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and mlpvision.__version__ in out.stdout
    bad = subprocess.run([sys.executable, "-m", "mlpvision", "models", "--bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
    assert "Traceback" not in bad.stderr
