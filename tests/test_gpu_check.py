"""export/gpu_check.py on a machine without a GPU: it stops at once (before torch), in one line, non-zero, with a JSON
that says skipped: no GPU. Also its pieces (GPU detection, how checks are recorded and summed up, which ONNX an FP16
engine is built from per TensorRT version) and, slow, a rehearsal of every step with the CPU standing in for the GPU.

None of this shows that the checks pass on a GPU: that is what running it there (make gpu-check) is for. The rehearsal
proves only the script's plumbing (stages, files, JSON), with fakes for nothing but the device.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

import roadseg.export.gpu_check as gpu_check
from roadseg.export.gpu_check import CHECKS, Check, Failed, GpuCheck, Recorder, Skipped, detect_gpu, summarize
from roadseg.models.core.cli import ToolError
from tests.conftest import REPO_ROOT, assert_one_line_error, run_script


def no_gpu_env() -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def check_no_gpu_json(path, fragment: str) -> dict:
    report = json.loads(path.read_text())
    assert report["format"] == gpu_check.FORMAT and report["status"] == "skipped"
    assert report["reason"].startswith("no GPU: ") and fragment in report["reason"]
    assert report["checks"] == [] and [t["check"] for t in report["not_tested"]] == list(CHECKS)
    assert all(t["reason"] == "no GPU" for t in report["not_tested"])
    return report


# without a GPU ----------------------------------------------------------------------------------------------------
def test_without_a_gpu_main_stops_at_once_with_one_line_and_the_json(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: (False, "no NVIDIA GPU found (nvidia-smi not found)"))
    monkeypatch.setattr(GpuCheck, "run_all", lambda self: pytest.fail("no check may run without a GPU"))
    args = gpu_check.get_args_parser().parse_args(["--out", str(tmp_path)])
    with pytest.raises(ToolError) as caught:
        gpu_check.main(args)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("no GPU: no NVIDIA GPU found") and "gpu_check.json" in message
    check_no_gpu_json(tmp_path / "gpu_check.json", "nvidia-smi not found")
    assert not (tmp_path / "work").exists()


@pytest.mark.slow
def test_with_every_gpu_hidden_the_script_stops_fast_in_one_line_before_torch(tmp_path):
    """CUDA_VISIBLE_DEVICES="" hides every GPU, so this holds on any machine, GPU or not."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "export/gpu_check.py"), "--out", str(tmp_path)],
                            cwd=REPO_ROOT, env=no_gpu_env(), capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 15
    assert_one_line_error(result, "no GPU: CUDA_VISIBLE_DEVICES='' hides every GPU", "gpu_check.json")
    assert result.returncode == 2 and result.stdout == ""
    check_no_gpu_json(tmp_path / "gpu_check.json", "hides every GPU")

    code = ("import sys; from roadseg.export import gpu_check\n"
            f"args = gpu_check.get_args_parser().parse_args(['--out', {str(tmp_path / 'again')!r}])\n"
            "try:\n    gpu_check.main(args)\nexcept gpu_check.ToolError:\n    pass\n"
            "heavy = sorted({'torch', 'onnxruntime', 'tensorrt', 'modelopt'} & set(sys.modules))\n"
            "assert not heavy, heavy")
    imports = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=no_gpu_env(), capture_output=True,
                             text=True, timeout=60)
    assert imports.returncode == 0, imports.stderr


@pytest.mark.slow
def test_on_this_machine(tmp_path):
    found, what = detect_gpu()
    if found:
        pytest.skip(f"this machine has a GPU ({what}): make gpu-check runs the checks")
    result = run_script("export/gpu_check.py", "--out", tmp_path, timeout=60)
    assert_one_line_error(result, "no GPU: ", "nothing to check on this machine")
    check_no_gpu_json(tmp_path / "gpu_check.json", what)


# finding a GPU -------------------------------------------------------------------------------------------------------
def fake_smi(tmp_path, stdout: str, code: int = 0):
    script = tmp_path / "nvidia-smi"
    script.write_text(f"#!/bin/sh\nprintf '%b' {json.dumps(stdout)}\nexit {code}\n")
    script.chmod(0o755)
    return str(script)


def nothing(path):
    raise FileNotFoundError(path)


def test_detect_gpu_from_nvidia_smi(tmp_path):
    smi = fake_smi(tmp_path, "GPU 0: NVIDIA H200 (UUID: GPU-1234)\n")
    found, what = detect_gpu({}, which=lambda name: smi, exists=lambda path: False, listdir=nothing)
    assert found and what == "GPU 0: NVIDIA H200 (UUID: GPU-1234)"


def test_detect_gpu_without_a_driver_says_what_nvidia_smi_said(tmp_path):
    smi = fake_smi(tmp_path, "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", 9)
    found, what = detect_gpu({}, which=lambda name: smi, exists=lambda path: False, listdir=nothing)
    assert not found and "couldn't communicate with the NVIDIA driver" in what and "not a Jetson" in what


def test_detect_gpu_from_the_driver_or_a_jetson():
    assert detect_gpu({}, which=lambda name: None, exists=lambda path: False, listdir=lambda path: ["0000:01:00.0"])[0]
    found, what = detect_gpu({}, which=lambda name: None, exists=lambda path: path == "/etc/nv_tegra_release",
                             listdir=nothing)
    assert found and "Jetson" in what
    found, what = detect_gpu({}, which=lambda name: None, exists=lambda path: False, listdir=nothing)
    assert not found and what.startswith("no NVIDIA GPU found (nvidia-smi not found")


@pytest.mark.parametrize("visible", ["", "-1", "none"])
def test_cuda_visible_devices_can_hide_every_gpu(visible):
    found, what = detect_gpu({"CUDA_VISIBLE_DEVICES": visible}, which=lambda name: pytest.fail("not asked"))
    assert not found and "hides every GPU" in what


# recording checks ----------------------------------------------------------------------------------------------------
def test_each_check_ends_in_its_own_status_and_the_next_one_runs():
    recorder = Recorder(log=lambda line: None)

    def skipped():
        raise Skipped("tensorrt is not installed")

    def failed():
        raise Failed("class agreement 90.000% < 98.0%", {"agreement_percent": 90.0})

    def crashed():
        raise RuntimeError("CUDA error: an illegal memory access\nwas encountered")

    assert recorder.run("a", lambda: {"fps": 100.0}) == {"fps": 100.0}
    for name, fn in (("b", skipped), ("c", failed), ("d", crashed)):
        assert recorder.run(name, fn) is None
    recorder.skip("e", "no zoo")
    statuses = [(c.name, c.status) for c in recorder.checks]
    assert statuses == [("a", "passed"), ("b", "skipped"), ("c", "failed"), ("d", "failed"), ("e", "skipped")]
    assert recorder.checks[2].figures == {"agreement_percent": 90.0}
    assert recorder.checks[3].reason.startswith("RuntimeError: CUDA error: an illegal memory access was encountered (")
    summary = summarize(recorder.checks)
    assert summary["counts"] == {"passed": 1, "failed": 2, "skipped": 2} and summary["status"] == "failed"
    assert summary["not_tested"] == [{"check": "b", "reason": "tensorrt is not installed"},
                                     {"check": "e", "reason": "no zoo"}]


@pytest.mark.parametrize(("checks", "fails"), [
    ([Check("cuda-train", "passed"), Check("engine-fp16", "skipped", "no tensorrt")], False),
    ([Check("cuda-train", "passed"), Check("engine-int8", "failed", "agreement 90%")], True),
])
def test_main_exits_0_unless_a_check_failed_and_always_writes_the_json(tmp_path, monkeypatch, checks, fails):
    monkeypatch.setattr(gpu_check, "detect_gpu", lambda: (True, "GPU 0: a stand-in"))

    def run_all(self):
        self.versions["torch"] = "stand-in"
        self.recorder.checks.extend(checks)

    monkeypatch.setattr(GpuCheck, "run_all", run_all)
    args = gpu_check.get_args_parser().parse_args(["--out", str(tmp_path), "--json", str(tmp_path / "r.json")])
    if fails:
        with pytest.raises(ToolError, match=r"1 GPU check\(s\) failed: engine-int8 \(reasons and figures in"):
            gpu_check.main(args)
    else:
        assert gpu_check.main(args) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["gpu"] == "GPU 0: a stand-in" and report["versions"] == {"torch": "stand-in"}
    assert [c["name"] for c in report["checks"]] == [c.name for c in checks] and report["rehearsal"] is False
    assert report["status"] == ("failed" if fails else "passed")
    assert report["not_tested"] == ([] if fails else [{"check": "engine-fp16", "reason": "no tensorrt"}])


def test_fp16_engines_come_from_the_fp32_onnx_on_10_and_the_fp16_onnx_on_11():
    assert gpu_check.engine_onnx_for_fp16(10) == "model_fp32.onnx"
    assert gpu_check.engine_onnx_for_fp16(11) == "model_fp16.onnx"


def test_thresholds_of_a_gpu_against_cpu_comparison():
    good = {"agreement_percent": 99.0, "road_iou_delta_points": -0.5}
    assert gpu_check.fraction_ok(good, 98.0, 1.0) is None
    assert "class agreement 97.000% < 98.0%" in gpu_check.fraction_ok({**good, "agreement_percent": 97.0}, 98.0, 1.0)
    assert "|road IoU delta| 1.500 points > 1.0" in gpu_check.fraction_ok({**good, "road_iou_delta_points": 1.5},
                                                                           98.0, 1.0)
    assert gpu_check.fraction_ok({**good, "road_iou_delta_points": float("nan")}, 98.0, 1.0)


def test_the_work_folder_is_deleted_only_when_this_script_made_it(tmp_path):
    args = gpu_check.get_args_parser().parse_args(["--out", str(tmp_path)])
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "precious.txt").write_text("not ours")
    with pytest.raises(ToolError, match="was not made by this script"):
        GpuCheck(args, Recorder()).fresh_work_folder()
    assert (tmp_path / "work" / "precious.txt").exists()
    (tmp_path / "work" / "precious.txt").unlink()
    (tmp_path / "work").rmdir()
    check = GpuCheck(args, Recorder())
    check.fresh_work_folder()
    (tmp_path / "work" / "old.log").write_text("from the last run")
    check.fresh_work_folder()
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [gpu_check.MARKER, "logs"]


# a rehearsal of every step ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_rehearsal_on_the_cpu_runs_every_step_it_can(tmp_path):
    result = run_script("export/gpu_check.py", "--out", tmp_path, "--rehearse-on-cpu", "--train-iters", 12,
                        "--frames", 4, "--drive-frames", 16, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["rehearsal"] is True and report["status"] == "passed" and report["counts"]["failed"] == 0
    status = {c["name"]: c["status"] for c in report["checks"]}
    for name in ("data", "cuda-train", "pytorch-gpu[trained]", "export", "ort-cuda", "ort-trt-fp16[model_fp32.onnx]",
                 "ort-trt-fp16[model_fp16.onnx]", "ort-trt-int8", "deploy[cpu]", "deploy[ort-trt-int8]", "bench"):
        assert status[name] == "passed", (name, report["checks"])
    figures = {c["name"]: c["figures"] for c in report["checks"]}
    assert figures["export"]["fp16"]["tool"] == "modelopt.onnx.autocast.convert_to_mixed_precision"
    assert figures["ort-trt-int8"]["against_cpu"]["images"] == 4
    assert figures["deploy[ort-trt-int8]"]["frames"] == 16
    names = {row["name"] for row in figures["bench"]["rows"]}
    assert names >= {"model_fp32", "model_fp16", "model_int8_trt"}
    if report["versions"]["tensorrt"].startswith("not usable"):
        assert status["engine-fp16"] == status["engine-int8"] == "skipped"
        assert {"check": "engine-fp16", "reason": report["versions"]["tensorrt"].removeprefix("not usable: ")} \
            in report["not_tested"]
