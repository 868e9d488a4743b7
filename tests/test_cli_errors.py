"""Bad command-line input: one line `cnnzoo NAME: error: ... Received: ...`, exit code 2.

Every bad value is caught before any work: the function that would do the
work is replaced by one that fails the test if it is called.
"""

import importlib

import pytest

from cnnzoo import cli


def _main(argv):
    # argparse's own errors exit (SystemExit); the project's return 2.
    try:
        return cli.main(argv)
    except SystemExit as exit:
        return exit.code


def _one_line_error(capsys, command, received):
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cnnzoo {command}: error: Expected"), err
    assert lines[0].endswith(received), err
    return lines[0]


def _no_work(monkeypatch, module, name):
    def work(*args, **kwargs):
        raise AssertionError(f"{module}.{name} ran: the bad input was not caught first")

    monkeypatch.setattr(importlib.import_module(module), name, work)


@pytest.fixture
def paths(tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    plain = tmp_path / "plain.txt"
    plain.write_text("not a folder\n")
    return {"folder": folder, "under_a_file": plain / "sub" / "report.json"}


@pytest.mark.parametrize("kind, expected", [
    ("folder", "Expected `json` to be a file path, not a folder."),
    ("under_a_file", "is a file."),
])
def test_verify_checks_json_path_before_any_check(paths, kind, expected, capsys, monkeypatch):
    _no_work(monkeypatch, "cnnzoo.verify", "verify")
    path = str(paths[kind])
    code = _main(["verify", "--quick", "--models", "simple_cnn", "--json", path])
    assert code == 2
    line = _one_line_error(capsys, "verify", f"Received: json={path!r}")
    assert expected in line
    assert paths["folder"].is_dir() and not any(paths["folder"].iterdir())
    assert not paths["under_a_file"].parent.exists()


@pytest.mark.parametrize("option", ["--json", "--markdown"])
@pytest.mark.parametrize("kind", ["folder", "under_a_file"])
def test_bench_checks_output_paths_before_the_suite(paths, option, kind, capsys, monkeypatch):
    _no_work(monkeypatch, "cnnzoo.bench", "run_suite")
    path = str(paths[kind])
    code = _main(["bench", "--quick", "--only", "startup", option, path])
    assert code == 2
    _one_line_error(capsys, "bench", f"Received: {option[2:]}={path!r}")
    assert not any(paths["folder"].iterdir())
    assert not paths["under_a_file"].parent.exists()


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "1"],
    ["tune", "--max-trials", "1", "--epochs", "1"],
    ["experiment", "activations"],
    ["experiment", "overfitting", "--epochs", "1"],
], ids=["train", "tune", "activations", "overfitting"])
def test_an_out_folder_below_a_file_fails_before_any_work(paths, argv, capsys):
    # It used to run, then fail in os.makedirs with a traceback.
    out = str(paths["under_a_file"].parent)
    assert _main([*argv, "--out", out]) == 2
    line = _one_line_error(capsys, argv[0], f"Received: out={out!r}")
    assert "plain.txt' is a file" in line
    assert not paths["under_a_file"].parent.exists()


def test_verify_with_nothing_selected_fails(capsys, monkeypatch):
    _no_work(monkeypatch, "cnnzoo.verify", "verify")
    code = _main(["verify", "--models", "none", "--no-layers"])
    assert code == 2
    line = _one_line_error(capsys, "verify", "Received: models='none'")
    assert "at least one check" in line


def test_verify_function_with_nothing_selected_fails():
    from cnnzoo import verify

    with pytest.raises(ValueError, match=r"at least one check.*Received: models=\[\]"):
        verify.verify(models=[], layers=False)


@pytest.mark.parametrize("argv, received", [
    (["--input-size", "abc"], "Received: input_size='abc'"),
    (["--image-size", "1,2,3"], "Received: image_size='1,2,3'"),
    (["--jit", "maybe"], "Received: jit='maybe'"),
    (["--block-dropout-rate", "x"], "Received: block_dropout_rate='x'"),
    (["--epochs", "ten"], "Received: epochs='ten'"),
    (["--learning-rate", "fast"], "Received: learning_rate='fast'"),
    (["--verbose", "5"], "Received: verbose=5"),
])
def test_train_bad_option_is_one_line(tmp_path, argv, received, capsys, monkeypatch):
    _no_work(monkeypatch, "cnnzoo.train", "train")
    out = tmp_path / "run"
    code = _main(["train", "--out", str(out), *argv])
    assert code == 2
    line = _one_line_error(capsys, "train", received)
    assert "usage:" not in line
    assert not out.exists()


def test_train_options_still_convert(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(importlib.import_module("cnnzoo.train"), "train",
                        lambda *args, **kwargs: seen.update(kwargs))
    code = _main(["train", "--out", str(tmp_path / "run"), "--input-size", "32x48",
                  "--image-size", "16", "--jit", "off", "--block-dropout-rate", "0.1,0.2",
                  "--epochs", "3", "--learning-rate", "0.01", "--verbose", "0"])
    assert code == 0
    assert (seen["input_size"], seen["image_size"], seen["jit"]) == ((32, 48), 16, False)
    assert seen["block_dropout_rate"] == [0.1, 0.2]
    assert (seen["epochs"], seen["learning_rate"], seen["verbose"]) == (3, 0.01, 0)
    assert (seen["batch_size"], seen["validation_split"]) == (32, 0.15)  # defaults


def test_predict_bad_top_k_is_one_line(tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch, "cnnzoo.predict", "predict")
    code = _main(["predict", str(tmp_path / "export"), str(tmp_path / "a.png"),
                  "--top-k", "many"])
    assert code == 2
    _one_line_error(capsys, "predict", "Received: top_k='many'")


@pytest.mark.parametrize("argv, received", [
    (["vanishing-gradients", "--steps", "abc"], "Received: steps='abc'"),
    (["overfitting", "--seed", "x"], "Received: seed='x'"),
    (["activations", "--range", "wide"], "Received: x_max='wide'"),
])
def test_experiment_bad_number_is_one_line(tmp_path, argv, received, capsys, monkeypatch):
    _no_work(monkeypatch, "cnnzoo.experiments", "run")
    out = tmp_path / "out"
    code = _main(["experiment", argv[0], "--out", str(out), *argv[1:]])
    assert code == 2
    _one_line_error(capsys, "experiment", received)
    assert not out.exists()


@pytest.mark.parametrize("initializer", ["bogus", "zeros"])
def test_experiment_bad_initializer_fails_before_any_work(tmp_path, initializer, capsys,
                                                          monkeypatch):
    # "zeros" is a Keras initializer, but one that takes no seed: `build` would crash.
    _no_work(monkeypatch, "cnnzoo.experiments._common", "load")
    out = tmp_path / "out"
    code = _main(["experiment", "vanishing-gradients", "--out", str(out),
                  "--initializer", initializer])
    assert code == 2
    line = _one_line_error(capsys, "experiment", f"Received: initializer={initializer!r}")
    assert "he_normal" in line
    assert not out.exists()


@pytest.mark.parametrize("initializer", ["he_normal", "HeNormal"])
def test_experiment_good_initializer_passes_the_check(tmp_path, initializer, monkeypatch):
    def load(*args, **kwargs):
        raise RuntimeError("reached the work")

    monkeypatch.setattr(importlib.import_module("cnnzoo.experiments._common"), "load", load)
    from cnnzoo.experiments import vanishing_gradients

    with pytest.raises(RuntimeError, match="reached the work"):
        vanishing_gradients.run(tmp_path / "out", initializer=initializer, log=None)


@pytest.mark.parametrize("argv, received", [
    (["--precision", "flot32"], "Received: precision='flot32'"),
    (["--max-trials", "x"], "Received: max_trials='x'"),
    (["--image-size", "8.5"], "Received: image_size='8.5'"),
    (["--tuner", "grid"], "Received: tuner='grid'"),
], ids=["precision", "max-trials", "image-size", "tuner"])
def test_tune_bad_option_is_one_line(capsys, monkeypatch, argv, received):
    # Every command's typed and choice options are checked by `cnnzoo.cli`.
    _no_work(monkeypatch, "tuning", "run")
    assert _main(["tune", *argv]) == 2
    line = _one_line_error(capsys, "tune", received)
    if argv[0] == "--precision":
        assert "Did you mean 'float32'?" in line


@pytest.mark.parametrize("text, size", [("8,16", (8, 16)), ("12x10", (12, 10)), ("9", 9)])
def test_tune_image_size_takes_height_and_width_as_train_does(monkeypatch, text, size):
    seen = []
    monkeypatch.setattr(importlib.import_module("tuning"), "run",
                        lambda settings, **kwargs: seen.append(settings))
    _main(["tune", "--image-size", text])
    assert seen[0].image_size == size


def test_export_bad_serving_version_is_one_line(capsys, tmp_path):
    out = tmp_path / "out"
    assert _main(["export", str(tmp_path), "--out", str(out), "--serving-version", "a"]) == 2
    _one_line_error(capsys, "export", "Received: serving_version='a'")
    assert not out.exists()


@pytest.mark.parametrize("argv, line", [
    (["tnue"], ("cnnzoo: error: Expected `command` to be one of ['list', 'info', 'summary', "
                "'tune', 'train', 'export', 'predict', 'verify', 'experiment', 'bench']. Did "
                "you mean 'tune'? Received: command='tnue'")),
    (["experiment", "overfiting", "--out", "x"],
     ("cnnzoo experiment: error: Expected `name` to be one of ['activations', "
      "'vanishing-gradients', 'overfitting', 'ordered-batches']. Did you mean 'overfitting'? "
      "Received: name='overfiting'")),
])
def test_a_bad_command_name_is_the_projects_error(capsys, argv, line):
    assert _main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [line]


@pytest.mark.parametrize("argv, message", [
    # An unknown option is the sub-command's error, pointing to its own --help.
    (["tune", "--bogus", "1"], "cnnzoo tune: error: unrecognized arguments: --bogus 1"),
    # Options are exact: no abbreviations.
    (["tune", "--max-trial", "3"], "cnnzoo tune: error: unrecognized arguments: --max-trial 3"),
    (["train", "--out", "x", "--learning", "0.1"],
     "cnnzoo train: error: unrecognized arguments: --learning 0.1"),
    (["train"], "cnnzoo train: error: the following arguments are required: --out"),
    (["experiment"], "cnnzoo experiment: error: the following arguments are required: NAME"),
])
def test_argparse_errors_are_one_line(capsys, argv, message):
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith(message) and "--help" in err
    command = message.split(":")[0]  # `cnnzoo tune`: its own help
    assert err.endswith(f"(see `{command} --help`).")
