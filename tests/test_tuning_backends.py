"""The same small search on the JAX backend, in a subprocess (the backend is fixed at import)."""

import json
import os
import subprocess
import sys
import textwrap

from tests.helpers import needs

SEARCH = textwrap.dedent("""
    import sys, tuning
    result = tuning.search(out=sys.argv[1], max_trials=2, epochs=1, num_samples=120,
                           batch_size=42, precision="float32", export=False, quiet=True)
    print("best", result.best["trial"])
""")


def test_small_search_on_jax(tmp_path):
    needs("jax", "jax", "jax")
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", SEARCH, str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["search"]["backend"] == "jax"
    assert [t["status"] for t in saved["trials"]] == ["COMPLETED", "COMPLETED"]
    assert saved["best"]["trial"] in (1, 2)
    assert proc.stdout.split()[-1] == str(saved["best"]["trial"])
    assert saved["trials"][0]["val_accuracy"] == saved["best"]["val_accuracy"]
