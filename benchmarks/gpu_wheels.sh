#!/usr/bin/env bash
# Downloads the wheels that the GPU machine lacks for benchmarks/gpu.py:
# Keras, Keras Tuner and their dependencies that its image does not hold
# (namex, optree, kt-legacy). Everything else gpu.py needs (JAX, numpy,
# h5py, rich, absl-py, ml-dtypes, grpcio, protobuf, requests, scikit-learn,
# matplotlib, pillow) is already there.
#
#   bash benchmarks/gpu_wheels.sh [FOLDER [PYTHON_VERSION]]   # defaults: .whl 3.12
#
# Then, on the GPU machine, from the repository root:
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site KERAS_BACKEND=jax python3 benchmarks/gpu.py ...
set -euo pipefail
folder="${1:-.whl}"
python_version="${2:-3.12}"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --python-version "$python_version" --implementation cp "${platforms[@]}" \
  -d "$folder" keras==3.15.1 keras-tuner==1.4.8 namex optree kt-legacy
ls "$folder"
