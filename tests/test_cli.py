"""The command line: each subcommand end to end, and one clear line for every user error."""

import dataclasses
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlpvision
from mlpvision.cli import COMMANDS, build_parser, main
from mlpvision.cli.models import markdown_table, zoo_rows
from mlpvision.models.zoo import describe_models

README = Path(__file__).resolve().parents[1] / "README.md"


def test_models_json_lists_every_model(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in sorted(rows, key=lambda r: r["name"])] == mlpvision.list_models()
    for r in rows:
        assert r["params"] > 0 and r["macs"] > 0


def test_shipped_model_table_equals_the_registry():
    # `mlpvision models` reads the shipped table; it must be what counting every registered model gives today
    assert zoo_rows() == describe_models(), "src/mlpvision/models/zoo.json is stale: run `make readme`"


def test_models_reads_the_shipped_table(tmp_path, monkeypatch, capsys):
    import mlpvision.cli.models as cli_models

    row = {**zoo_rows()[0], "name": "only_in_this_table", "params": 123}
    table = tmp_path / "zoo.json"
    table.write_text(json.dumps({"rows": [row]}))
    monkeypatch.setattr(cli_models, "ZOO_TABLE", table)
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [row]


@pytest.mark.parametrize(
    "pattern, present, absent",
    [
        ("resmlp_*", ["resmlp_12_224", "resmlp_tiny_12_28"], ["mixer_s16_224"]),
        ("mixer", ["mixer_s16_224", "mixer_t4_28"], ["resmlp_12_224"]),  # a substring
        ("MIXER_T", ["mixer_t4_28"], ["mixer_s16_224"]),  # case-insensitive
        ("*_28", ["mixer_t4_28", "repmlp_fast_28"], ["mixer_s16_224"]),
    ],
)
def test_models_pattern_is_a_substring_or_a_glob(capsys, pattern, present, absent):
    assert main(["models", pattern, "--json"]) == 0
    names = {r["name"] for r in json.loads(capsys.readouterr().out)}
    assert set(present) <= names and not set(absent) & names


def test_models_without_a_match_explains_the_pattern(capsys):
    assert main(["models", "mixr"]) == 2
    err = capsys.readouterr().err
    assert "part of a name" in err and "glob" in err and "mixer" in err
    assert len(err.strip().splitlines()) == 1


def test_models_does_not_import_torch():
    code, modules = _modules_loaded_by(["models", "mixer"])
    assert code == 0 and "torch" not in modules, sorted(modules)


def test_readme_model_table_is_generated():
    text = README.read_text()
    start, end = "<!-- models:start -->\n", "<!-- models:end -->"
    assert start in text and end in text
    table = text.split(start, 1)[1].split(end, 1)[0]
    assert table == markdown_table(zoo_rows()), "README model table is stale: run `make readme`"


def test_readme_deploy_summary_is_generated_from_the_benchmark():
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_readme", README.parent / "tools" / "update_readme.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = README.read_text()
    start, end = "<!-- deploy:start -->\n", "<!-- deploy:end -->"
    assert text.split(start, 1)[1].split(end, 1)[0] == tool.deploy_summary(), "stale: run `make readme`"
    start, end = "<!-- quickstart:start -->\n", "<!-- quickstart:end -->"
    assert text.split(start, 1)[1].split(end, 1)[0] == tool.quick_start_summary(), "stale: run `make readme`"


def test_demo_trains_a_model_and_classifies_test_images(capsys):
    assert main(["demo", "--num-images", "4", "--train-images", "300"]) == 0
    out = capsys.readouterr().out
    assert "mixer_t4_28" in out and "trained in" in out and "correct" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["models", "nomatch_*"], "no model matches 'nomatch_*'"),
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


def _modules_loaded_by(argv: list[str]) -> tuple[int, set[str]]:
    """Runs ``python -m mlpvision ARGV`` in a fresh interpreter: (exit code, the top-level modules it imported)."""
    code = (
        "import sys\n"
        "from mlpvision.cli import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as e:\n"
        "    code = e.code\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}))\n"
        "sys.exit(code)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return out.returncode, set(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_does_not_import_torch(command):
    code, modules = _modules_loaded_by(["--help"] if command is None else [command, "--help"])
    assert code == 0
    assert not modules & {"torch", "torchvision", "numpy", "matplotlib", "onnxruntime"}, sorted(modules)


def test_version_does_not_import_torch():
    code, modules = _modules_loaded_by(["--version"])
    assert code == 0 and "torch" not in modules


def test_the_import_check_can_fail():
    code, modules = _modules_loaded_by(["deploy", "missing.safetensors", "out.safetensors"])  # runs the command
    assert code == 2 and "torch" in modules


def test_train_flags_read_from_source_equal_the_imported_configs():
    from mlpvision.cli.train import config_fields
    from mlpvision.data import AugmentConfig
    from mlpvision.fields import field_docs
    from mlpvision.train import TrainConfig

    fields, aug = config_fields()
    assert aug is not AugmentConfig, "read from source, not imported (the reader fell back to importing)"
    real = field_docs(TrainConfig)
    assert [(f.name, f.help) for f in fields] == [(f.name, f.help) for f in real]
    for mine, theirs in zip(fields, real, strict=True):
        if mine.name == "aug":
            assert dataclasses.asdict(mine.default) == dataclasses.asdict(theirs.default)
        else:
            assert (mine.hint, mine.default) == (theirs.hint, theirs.default), mine.name
    assert aug.__source_field_docs__ == field_docs(AugmentConfig)


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
    from mlpvision.cli.common import load_recipe
    from mlpvision.cli.train import train_overrides
    from mlpvision.train import TrainConfig

    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 1.0e-3\nepochs: 4\naug: {hflip: 0.0, mixup: 0.2}\nmodel_args: {depth: 2}\n")
    argv = ["train", "--config", str(recipe), "--epochs", "7", "--crop-padding", "3", "--model-arg", "embed_dim=32"]
    args = build_parser().parse_args(argv)
    cfg = TrainConfig.from_recipe(load_recipe(args.config), train_overrides(args))
    assert (cfg.lr, cfg.epochs) == (1e-3, 7)
    assert (cfg.aug.crop_padding, cfg.aug.hflip, cfg.aug.mixup) == (3, 0.0, 0.2)
    assert cfg.model_args == {"depth": 2, "embed_dim": 32}


def _subparsers():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def test_enumerated_options_list_their_choices_and_help_names_no_internals():
    for name, p in _subparsers().items():
        for action in p._actions:
            text = action.help or ""
            for internal in ("runtime.", "mlpvision.", "native_bf16", '{"'):
                assert internal not in text, f"{name} {action.option_strings}: {text}"
    train = _subparsers()["train"]
    choices = {a.dest: a.choices for a in train._actions}
    assert choices["optimizer"] == ("adamw", "sgd") and choices["distill"] == ("none", "hard", "soft")
    assert choices["aug.auto_augment"] == ("none", "randaugment", "trivialaugment")
    assert _subparsers()["eval"]._option_string_actions["--split"].choices == ("test", "val", "train")
    for cmd in ("eval", "predict", "bench"):
        assert _subparsers()[cmd]._option_string_actions["--device"].choices == ("auto", "cpu", "cuda")


def test_bench_help_names_every_backend(monkeypatch):
    from mlpvision.deploy import BACKENDS

    monkeypatch.setenv("COLUMNS", "1000")  # no line breaks inside a name
    text = _subparsers()["bench"].format_help()
    assert all(b in text for b in BACKENDS)


def test_option_choices_refuse_other_values(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--optimizer", "adam"])
    assert "invalid choice: 'adam'" in capsys.readouterr().err
    from mlpvision.errors import ConfigError
    from mlpvision.train import TrainConfig

    with pytest.raises(ConfigError, match="optimizer must be one of adamw, sgd, got 'adam'"):
        TrainConfig.from_recipe({"optimizer": "adam"})


def test_shipped_recipes_are_found_by_name(tmp_path, monkeypatch):
    import yaml

    from mlpvision.cli.common import RECIPES, load_recipe

    monkeypatch.chdir(tmp_path)  # outside the repository
    shipped = yaml.safe_load((RECIPES / "repmlp_fast_28.yaml").read_text())
    assert load_recipe("repmlp_fast_28") == shipped == load_recipe("repmlp_fast_28.yaml")
    with pytest.raises(mlpvision.MlpVisionError, match=r"no shipped recipe of that name; shipped: .*mixer_t4_28"):
        load_recipe("repmlp_fats_28")
    own = tmp_path / "mine.yaml"
    own.write_text("epochs: 3\n")
    assert load_recipe(str(own)) == {"epochs": 3}


@pytest.mark.parametrize(
    ("code", "status", "advice"),
    [(errno.ENOSPC, 1, "free space"), (errno.ELOOP, 2, "check the path"), (errno.EACCES, 2, "check the path")],
)
def test_an_os_error_is_one_line_the_machines_failure_or_bad_input(monkeypatch, capsys, code, status, advice):
    """A full disk fails the run (1); a path that cannot be read or written is bad input (2); one line each."""
    import mlpvision.cli.models

    def fail(args):
        raise OSError(code, os.strerror(code), "some/path")

    monkeypatch.setattr(mlpvision.cli.models, "run", fail)
    assert main(["models"]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and advice in err[0] and "some/path" in err[0], err
