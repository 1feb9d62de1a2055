#!/usr/bin/env python3
"""A plugin that pretends to keep a model in GPU memory, for tests with fake-nvidia-smi.

On its first job it "loads the model": for each GPU index in
CUDA_VISIBLE_DEVICES it writes an allocation file into the state_dir of the
fake-nvidia-smi config named by FAKE_GPU_CONFIG, mapping the index to the
GPU's UUID through that config. The file is {"pid": <this process>,
"gpu_uuid": ..., "used_mb": GPU_MODEL_MB}, where the manifest sets the
environment variable GPU_MODEL_MB to its gpu_memory_mb. A persistent
process keeps its files while it stays warm and removes them when it shuts
down. A process that is killed leaves them behind, and fake-nvidia-smi
drops the files of processes that are gone.

Each job runs for kwargs["seconds"] (default 0), reporting progress ten
times a second and stopping early on a cancel. kwargs["error"] fails the job
with that message. The result is {"pid", "gpus", "gpu_uuids", "model_mb"}.
"""

import json
import os
import sys
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of examples/plugins
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "examples", "plugins"))

import jetqueue_plugin  # noqa: E402

model_files = []  # allocation files this process wrote
model_uuids = []


def visible_gpus():
    text = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return [int(part) for part in text.split(",") if part.strip()]


def load_model():
    """Write one allocation file per visible GPU, once per process."""
    if model_files:
        return
    gpus = visible_gpus()
    if not gpus:
        raise RuntimeError("no GPU given: CUDA_VISIBLE_DEVICES is empty; submit the job to a worker with GPUs")
    config_path = os.environ["FAKE_GPU_CONFIG"]
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    uuids = {gpu["index"]: gpu["uuid"] for gpu in config["gpus"]}
    model_mb = int(os.environ["GPU_MODEL_MB"])
    state_dir = config["state_dir"]
    os.makedirs(state_dir, exist_ok=True)

    for index in gpus:
        if index not in uuids:
            raise RuntimeError(f"GPU index {index} is not in {config_path}")
        path = os.path.join(state_dir, f"{os.getpid()}-{uuids[index]}.json")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"pid": os.getpid(), "gpu_uuid": uuids[index], "used_mb": model_mb}, f)
        os.replace(tmp, path)
        model_files.append(path)
        model_uuids.append(uuids[index])


def unload_model():
    for path in model_files:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    model_files.clear()


def handle(job):
    load_model()
    if "error" in job.kwargs:
        raise RuntimeError(str(job.kwargs["error"]))

    seconds = float(job.kwargs.get("seconds", 0))
    deadline = time.monotonic() + seconds
    while True:
        job.check_cancelled()
        left = deadline - time.monotonic()
        if left <= 0:
            break
        job.progress(min(1 - left / seconds, 1), f"{left:.1f}s left")
        time.sleep(min(left, 0.1))
    return {"pid": os.getpid(), "gpus": visible_gpus(), "gpu_uuids": model_uuids, "model_mb": int(os.environ["GPU_MODEL_MB"])}


if __name__ == "__main__":
    try:
        jetqueue_plugin.run(handle)
    finally:
        unload_model()
