import re

import pytest

from clreplay.cli import main
from clreplay.presets import list_presets, load_preset, read_config_file, resolve_config
from clreplay.run import RunConfig


def test_every_shipped_preset_is_a_valid_run():
    assert {"der_er_split_mnist", "der_er_split_cifar10", "split_fashion_mnist"} <= set(list_presets())
    for name in list_presets():
        assert load_preset(name)["description"]
        config = resolve_config({"data": "somewhere"}, preset=name)
        config.validate()


def test_published_rows():
    mnist = resolve_config({}, preset="der_er_split_mnist")
    assert (mnist.benchmark, mnist.hidden, mnist.epochs, mnist.batch_size, mnist.batch_size_mem,
            mnist.lr, mnist.momentum, mnist.mem_size, mnist.online) == \
        ("split_mnist", [100, 100], 1, 10, 10, 0.01, 0.0, 200, True)
    cifar = resolve_config({}, preset="der_er_split_cifar10")
    assert (cifar.model, cifar.width, cifar.epochs, cifar.batch_size, cifar.lr, cifar.augment) == \
        ("resnet18", 64, 50, 32, 0.1, True)


def test_layers_defaults_benchmark_preset_file_flags(tmp_path):
    assert resolve_config({}).epochs == RunConfig().epochs == 5
    fashion = resolve_config({"benchmark": "split_fashion_mnist"})
    assert (fashion.epochs, fashion.lr, fashion.batch_size) == (1, 0.005, 32)
    assert resolve_config({"benchmark": "split_fashion_mnist", "epochs": 3}).epochs == 3
    assert resolve_config({"benchmark": "split_cifar10"}).model == "resnet18"
    own = tmp_path / "mine.toml"
    own.write_text('lr = 0.2\nepochs = 7\nhidden = [32, 32]\n')
    config = resolve_config({"epochs": 2}, preset="der_er_split_mnist", config_file=own)
    assert (config.lr, config.epochs, config.hidden, config.batch_size) == (0.2, 2, [32, 32], 10)
    assert resolve_config({}).policy is None and resolve_config({}).validate().policy == "experience"


def test_unknown_keys_and_names_are_clear_errors(tmp_path):
    own = tmp_path / "mine.toml"
    own.write_text("lrr = 0.1\n")
    with pytest.raises(ValueError, match=r"mine.toml' has an unknown key 'lrr'.*did you mean 'lr'\?"):
        read_config_file(own)
    own.write_text("lr = \n")
    with pytest.raises(ValueError, match="must be valid TOML"):
        read_config_file(own)
    with pytest.raises(ValueError, match="preset must be one of .* got 'der_er'"):
        load_preset("der_er")
    with pytest.raises(FileNotFoundError, match="config must be a TOML file"):
        read_config_file(tmp_path / "none.toml")


def test_cli_presets_and_errors(tmp_path, capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^der_er_split_cifar10 +DER paper \(Buzzega et al. 2020\), Seq-CIFAR-10, ER, buffer 200$",
                     out, re.MULTILINE)
    assert main(["presets", "--show", "der_er_split_mnist"]) == 0
    assert "lr = 0.01" in capsys.readouterr().out
    own = tmp_path / "mine.toml"
    own.write_text("epochz = 1\n")
    assert main(["run", "--config", str(own)]) == 2
    assert "unknown key 'epochz'" in capsys.readouterr().err
    assert main(["run", "--preset", "nope"]) == 2
    assert "preset must be one of" in capsys.readouterr().err


def test_commands_in_preset_comments_are_valid_runs():
    # Before: "The paper's DER row (when --method der lands)", long after it had landed.
    import shlex

    from clreplay.cli import build_parser
    from clreplay.presets import preset_text

    commands = []
    for name in list_presets():
        text = preset_text(name)
        assert "lands" not in text and "when --method" not in text
        commands += [line.lstrip("# ").split("clreplay ", 1)[1] for line in text.splitlines()
                     if line.startswith("#") and "clreplay run " in line]
    assert len(commands) >= 6
    for command in commands:
        argv = shlex.split(command.replace("DIR", "somewhere"))
        args, unknown = build_parser(argv).parse_known_args(argv)
        assert unknown == [], command
        given = {k: v for k, v in vars(args).items() if k in RunConfig.__dataclass_fields__}
        options = {k: getattr(args, k) for k in ("alpha", "beta") if hasattr(args, k)}
        config = resolve_config({**given, "method_options": options}, preset=args.preset)
        config.validate()


def test_tuned_presets_are_named_method_benchmark_memory_and_hold_their_method_options(tmp_path):
    names = list_presets()
    for method in ("er", "cls-er", "mir", "bic", "scr", "onpro"):
        for benchmark in ("split_fashion_mnist", "split_digits"):
            assert f"{method}/{benchmark}/200" in names
    config = resolve_config({"seed": 3}, preset="cls-er/split_fashion_mnist/200").validate()
    assert (config.method, config.mem_size, config.class_order, config.init, config.seed) == (
        "cls-er", 200, "label", "xavier", 3)
    assert set(config.method_options) == {"reg_weight", "plastic_alpha", "plastic_freq", "stable_alpha",
                                          "stable_freq", "store_every_epoch"}
    own = tmp_path / "mine.toml"
    own.write_text('method = "derpp"\n[method_options]\nbeta = 0.25\n')
    assert resolve_config({}, config_file=own).validate().method_options["beta"] == 0.25
    own.write_text('[model_options]\nwidth = 3\n')
    with pytest.raises(ValueError, match="unknown key 'model_options'"):
        resolve_config({}, config_file=own)
    own.write_text('method_options = 3\n')
    with pytest.raises(ValueError, match="method_options must be a table of the method's options, got 3"):
        resolve_config({}, config_file=own)
