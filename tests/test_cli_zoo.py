"""`cnnzoo --help`, `list`, `info` and `summary`."""

import json
import subprocess
import sys
import textwrap

import pytest

import cnnzoo
from cnnzoo.cli import main

HEAVY = ("tensorflow", "keras", "jax")


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["list", "resnet*"], ["list", "--json"],
                                  ["list", "--pretrained"], ["info", "resnet50"], ["info", "nosuchnet"]])
def test_help_list_info_do_not_import_tensorflow(argv):
    # A fresh interpreter: the test process has imported Keras already.
    script = textwrap.dedent(f"""
        import sys
        from cnnzoo.cli import main
        try:
            code = main({argv!r})
        except SystemExit as exit:  # argparse's --help
            code = exit.code
        heavy = [m for m in {HEAVY!r} if m in sys.modules]
        assert not heavy, heavy
        sys.exit(code)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    expected = 2 if "nosuchnet" in argv else 0
    assert result.returncode == expected, result.stderr


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "list", "vgg1?"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:5]] == \
        ["vgg11", "vgg13", "vgg16", "vgg19"]


@pytest.mark.parametrize("argv, code", [(["list", "vgg1?"], 0), (["info", "nosuchnet"], 2)])
def test_the_program_exits_with_the_code_frozen_and_runs_exit_handlers(argv, code):
    # `cli.run` ends the process: with main's exit code, its objects frozen
    # (the interpreter's last collection skips them), and atexit handlers run.
    script = textwrap.dedent(f"""
        import atexit, gc
        from cnnzoo import cli
        atexit.register(lambda: print("exit handler, frozen:", gc.get_freeze_count() > 0))
        cli.run({argv!r})
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == code, result.stderr
    assert result.stdout.splitlines()[-1] == "exit handler, frozen: True"
    assert ("vgg11" in result.stdout) == (code == 0)


def test_help_names_the_zoo_commands(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    for command in ("list", "info", "summary"):
        assert command in out


def test_list_is_a_table_of_every_model(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "family", "parameters", "default", "input", "paper"]
    rows = {line.split()[0]: line for line in lines[1:] if line.strip() and "models." not in line}
    assert sorted(rows) == cnnzoo.list_models()
    assert "61,100,840" in rows["alexnet"] and "224x224x3" in rows["alexnet"]
    assert "32x32x3" in rows["wide_resnet28_10"] and "Zagoruyko" in rows["wide_resnet28_10"]
    assert f"{len(rows)} models." in lines[-1]


def test_list_pattern_and_json(capsys):
    assert main(["list", "resnet*", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == ["resnet101", "resnet18", "resnet34", "resnet50"]
    assert infos[3]["trainable_params"] == 25_557_032
    assert main(["list", "nothing*"]) == 0
    assert "0 models." in capsys.readouterr().out


def test_info_shows_metadata(capsys):
    assert main(["info", "wide_resnet28_10"]) == 0
    out = capsys.readouterr().out
    fields = dict(line.strip().split(": ", 1) for line in out.splitlines())
    assert fields["name"] == "wide_resnet28_10"
    assert fields["min_input_size"] == "4"
    assert fields["trainable_params"] == "36479194"
    assert json.loads(fields["dropout"])["block_dropout_rate"] == 0.3
    assert "drop_path_rate" in fields["supported_kwargs"]


@pytest.mark.parametrize("argv, received", [
    (["info", "resnet5"], "Received: name='resnet5'"),
    (["list", "--json", "x", "y"], None),
    (["summary", "nosuchnet"], "Received: name='nosuchnet'"),
    (["summary", "lenet5", "--input-shape", "abc"], "Received: input_shape='abc'"),
    (["summary", "lenet5", "--input-shape", "28,28,1"], "Received: input_shape=(28, 28, 1)"),
    (["summary", "lenet5", "--dropout-rate", "1.5"], "Received: dropout_rate=1.5"),
    (["summary", "lenet5", "--dropout-rate", "nan"], "Received: dropout_rate=nan"),
    (["summary", "lenet5", "--dropout-rate", "half"], "Received: dropout_rate='half'"),
    (["summary", "lenet5", "--num-classes", "0"], "Received: num_classes=0"),
    (["summary", "lenet5", "--num-classes", "2.5"], "Received: num_classes='2.5'"),
    (["summary", "lenet5", "--activation", "relux"], "Received: activation='relux'"),
    (["summary", "lenet5", "--block-dropout-rate", "0.1,0.2"],
     "Received: block_dropout_rate=[0.1, 0.2]"),
    (["summary", "lenet5", "--block-dropout-rate", "a,b"], "Received: block_dropout_rate='a,b'"),
    (["summary", "lenet5", "--dropout-type", "gauss"], "Received: dropout_type='gauss'"),
    (["summary", "lenet5", "--implementation", "torch"], "Received: implementation='torch'"),
    (["summary", "vgg11", "--drop-path-rate", "0.1"], "Received: drop_path_rate=0.1"),
    (["summary", "resnet18", "--drop-path-rate", "1"], "Received: drop_path_rate=1.0"),
])
def test_bad_input_exits_2_with_one_line(argv, received, capsys):
    if received is None:  # an argparse usage error: argparse's own exit 2
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
        return
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"cnnzoo {argv[0]}: error: Expected") or \
        lines[0].startswith(f"cnnzoo {argv[0]}: error: Unknown model") or \
        "does not support" in lines[0]
    assert lines[0].endswith(received), lines[0]


@pytest.mark.multibackend
def test_summary_builds_with_options(capsys):
    assert main(["summary", "lenet5", "--input-shape", "36x36x1", "--num-classes", "4",
                 "--activation", "tanh", "--dropout-rate", "0.25",
                 "--block-dropout-rate", "0.1,0.2,0.3", "--dropout-type", "spatial"]) == 0
    out = capsys.readouterr().out
    for layer in ("block1_conv1", "block1_act1", "block3_drop1", "fc1_drop", "predictions"):
        assert layer in out
    assert "(None, 4)" in out
