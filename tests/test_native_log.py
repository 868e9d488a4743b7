"""TensorFlow's start-up notices are dropped from the command line; nothing else is."""

import os
import subprocess
import sys

import pytest

from cnnzoo import _native_log


def test_notices_dropped_other_lines_kept_in_order(capfd):
    notice = (b"I0000 00:00:1796012781.523566   24805 port.cc:153] oneDNN custom operations "
              b"are on. You may see slightly different numerical results.\n")
    with _native_log.without_notices():
        os.write(2, notice)
        os.write(2, b"a real warning\n")
        os.write(2, b"E0000 00:00:1796012785.288752   24805 cuda_platform.cc:52] failed call "
                    b"to cuInit: INTERNAL: CUDA error\n")
        os.write(2, b"a real error\n")
    assert capfd.readouterr().err == "a real warning\na real error\n"


def test_pythons_own_stderr_passes_through():
    # In a process of its own: under pytest, `sys.stderr` is not fd 2.
    script = ("import os, sys\n"
              "from cnnzoo import _native_log\n"
              "with _native_log.without_notices():\n"
              "    print('a warning from Python', file=sys.stderr)\n"
              "    os.write(2, b'W0000 cudart_stub.cc:31] Could not find cuda drivers on your "
              "machine, GPU will not be used.\\n')\n"
              "print('after', file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "a warning from Python\nafter\n"


def test_lines_written_back_when_the_block_raises(capfd):
    with pytest.raises(RuntimeError), _native_log.without_notices():
        os.write(2, b"before the failure\n")
        raise RuntimeError("boom")
    assert capfd.readouterr().err == "before the failure\n"
    os.write(2, b"fd 2 is the terminal again\n")
    assert capfd.readouterr().err == "fd 2 is the terminal again\n"


def test_a_tensorflow_command_starts_without_notices():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "cnnzoo", "summary", "lenet5"],
                            capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "Total params" in result.stdout
    found = [n for n in _native_log.NOTICES if n in result.stderr]
    assert not found, result.stderr


def test_a_jax_command_starts_without_tensorflows_notices_too():
    # On JAX, Keras imports TensorFlow (where installed) at the first
    # set_random_seed: its notices came then, outside the filter.
    script = ("from cnnzoo import _native_log\n"
              "_native_log.start_backend()\n"
              "import keras\n"
              "keras.utils.set_random_seed(0)\n"
              "print(keras.backend.backend())\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = "jax"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["jax"]
    found = [n for n in _native_log.NOTICES if n in result.stderr]
    assert not found, result.stderr


@pytest.mark.parametrize("code", [
    "import cnnzoo; cnnzoo.create_model('lenet5')",
    "import numpy, cnnzoo.layers; cnnzoo.layers.ReLU()(numpy.ones(2))",
    "from cnnzoo import train",
])
def test_python_api_starts_quietly(code):
    # Where the caller has not imported Keras itself, TensorFlow's notices are
    # cnnzoo's to drop: a plain import and a first model print nothing.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=False, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
