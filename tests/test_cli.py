"""The command line: each subcommand end to end, and one clear line for every user error."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mlpvision
from mlpvision.cli import build_parser, main
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


def test_readme_deploy_summary_is_generated_from_the_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_readme", README.parent / "tools" / "update_readme.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = README.read_text()
    start, end = "<!-- deploy:start -->\n", "<!-- deploy:end -->"
    assert text.split(start, 1)[1].split(end, 1)[0] == tool.deploy_summary(), "stale: run `make readme`"


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


def test_every_train_flag_has_help_and_shows_its_default():
    parser = build_parser()
    train = next(a for a in parser._actions if a.dest == "command").choices["train"]
    flags = [a for a in train._actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 40  # every TrainConfig and augmentation field, and the run's own flags
    undocumented = [a.option_strings[0] for a in flags if not a.help or "(default: " not in a.help]
    assert not undocumented
    text = train.format_help()
    assert "peak learning rate (default: 0.002)" in text and "random crop after zero padding" in text


def test_train_flags_override_the_recipe_and_refine_its_augmentation(tmp_path):
    from mlpvision.cli import _load_recipe, _train_overrides
    from mlpvision.train import TrainConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1.0e-3\nepochs: 4\naug: {hflip: 0.0, mixup: 0.2}\nmodel_args: {depth: 2}\n")
    argv = ["train", "--config", str(recipe), "--epochs", "7", "--crop-padding", "3", "--model-arg", "embed_dim=32"]
    args = build_parser().parse_args(argv)
    cfg = TrainConfig.from_recipe(_load_recipe(args.config), _train_overrides(args))
    assert (cfg.lr, cfg.epochs) == (1e-3, 7)
    assert (cfg.aug.crop_padding, cfg.aug.hflip, cfg.aug.mixup) == (3, 0.0, 0.2)
    assert cfg.model_args == {"depth": 2, "embed_dim": 32}
