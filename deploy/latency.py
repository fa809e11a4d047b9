"""Model-only latency of an ONNX model in onnxruntime (no torch), with the conditions stated.

Every number says what it covers: backend and provider, threads, input size, warm-up and timed
runs; it gives p50/p90/p99 in milliseconds and FPS from p50.

    from roadseg.deploy.latency import onnx_latency
    onnx_latency("model.onnx", input_size=(352, 480), threads=2)
    interleaved_onnx_latency({"fp32": a, "int8": b}, (352, 480), rounds=3, threads=2)
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def percentiles_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000.0
    p50 = float(np.percentile(ms, 50))
    return {"p50_ms": p50, "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "fps": 1000.0 / p50 if p50 > 0 else float("inf")}


def onnx_session(model: str | os.PathLike | bytes, threads: int = 0, providers: list[str] | None = None,
                 spin: bool = True):
    """An onnxruntime CPU (or ``providers``) session. ``spin=False`` for a model that shares the cores with
    other work (the run time's capture, render and write threads): onnxruntime's worker threads otherwise
    busy-wait between runs, which on a 2-core machine cut the pipeline's end-to-end FPS by a third with a
    1.5 ms model (110 against 164 FPS on the dashcam clip, deploy/results/cpu_backends.md)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0 = onnxruntime's default (all cores)
    options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=providers or ["CPUExecutionProvider"])


def onnx_load_errors() -> tuple[type[Exception], ...]:
    """onnxruntime's errors for a file it cannot load (they derive from Exception only)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return (state.InvalidProtobuf, state.InvalidGraph, state.InvalidArgument, state.Fail, state.NoSuchFile,
            state.NotImplemented, state.RuntimeException)


def checked_onnx_session(path: str | os.PathLike, flag: str = "--model", **kwargs):
    """``onnx_session`` on a user's file: an empty, foreign or unsupported file is one line naming it."""
    from roadseg.models.core.cli import ToolError

    path = Path(path)
    if not path.is_file():
        raise ToolError(f"{flag} {path}: no such file")
    if path.stat().st_size == 0:
        raise ToolError(f"{flag} {path}: is empty (0 bytes); expected an ONNX model")
    try:
        return onnx_session(path, **kwargs)
    except onnx_load_errors() as err:
        raise ToolError(f"{flag} {path}: onnxruntime cannot load it: {str(err).splitlines()[0]}") from None


def onnx_latency(model: str | os.PathLike | bytes, input_size: tuple[int, int], threads: int = 0,
                 warmup: int = 5, runs: int = 30, batch: int = 1, seed: int = 0) -> dict:
    session = onnx_session(model, threads)
    name = session.get_inputs()[0].name
    image = np.random.default_rng(seed).standard_normal((batch, 3, *input_size), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {name: image})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {name: image})
        times.append(time.perf_counter() - start)
    return {"covers": "model only (session.run on a preprocessed tensor)", "backend": "onnxruntime",
            "provider": session.get_providers()[0],
            "threads": threads or "onnxruntime default (one per physical core)",
            "precision": "as stored in the model", "input_size": list(input_size), "batch": batch,
            "warmup": warmup, "runs": runs, "cpu": cpu_model(), **percentiles_ms(times)}


def interleaved_onnx_latency(graphs: dict, input_size: tuple[int, int], rounds: int = 3, **kwargs) -> dict:
    """onnx_latency of several models, timed in alternating rounds so that a change in machine load
    hits all of them alike; each percentile is the median of its rounds' values (fps from that p50).
    ``kwargs`` go to onnx_latency (threads, warmup, runs)."""
    samples = {name: [] for name in graphs}
    for _ in range(rounds):
        for name, graph in graphs.items():
            samples[name].append(onnx_latency(graph, input_size, **kwargs))
    summary = {}
    for name, runs in samples.items():
        medians = {key: float(np.median([r[key] for r in runs])) for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")}
        summary[name] = {**runs[-1], **medians, "fps": 1000.0 / medians["p50_ms"], "rounds": rounds,
                         "statistic": "median over rounds of each round's percentile"}
    return summary
