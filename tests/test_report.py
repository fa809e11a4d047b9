"""roadseg report (deploy/report.py) and the demo's stage recorder (models/core/demo_stages.py), on a run
folder written here by hand: no training, no torch. The HTML must parse, every picture must be an
embedded PNG that OpenCV decodes, every stage must be listed and a failed one shown with its reason."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadseg.deploy import report
from roadseg.models.core.demo_stages import check, last_error_line, read_stages, record
from roadseg.models.core.model_metadata import IMAGENET_MEAN, IMAGENET_STD, ModelInfo

UNET_ARCH = {"name": "unet", "depth": 2, "in_channels": 3, "num_classes": 2, "norm": "bn", "up": "transpose",
             "separable": False, "encoder_widths": [[8, 8], [16, 16], [32, 32]], "up_widths": [16, 8],
             "decoder_widths": [[16, 16], [8, 8]]}
PRUNED_ARCH = {**UNET_ARCH, "encoder_widths": [[8, 8], [8, 8], [16, 16]], "up_widths": [8, 8],
               "decoder_widths": [[8, 8], [8, 8]]}


def val(iou: float) -> dict:
    return {"road_iou": iou, "precision": iou + 0.02, "recall": iou + 0.01, "f1": iou, "pixel_acc": 0.9, "pixels": 100}


def tiny_onnx(path: Path, size=(64, 128), stage: str = "pruned", arch: dict | None = None) -> Path:
    """A 1x1-conv 'road model' with roadseg metadata (road where the red channel is high), built with onnx."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((2, 3, 1, 1), np.float32)
    weights[1, 0] = 1.0  # road logit: the normalised red channel
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["logits"])], "road",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"stage": stage, "input_size": list(size), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "dataset": "synthetic", "complexity": {"params": 6, "gmacs": 0.001, "input_size": list(size)},
            "versions": {"torch": "9.9.9"}}
    for key, value in ModelInfo(arch=arch or PRUNED_ARCH, meta=meta).to_props().items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    """A run folder shaped like make demo's: train, eval, prune, a failed qat, exports, bench, deploy."""
    run = tmp_path / "run"
    history = [{"epoch": 0, "step": 2, "train_loss": 0.7, "lr": 1e-3, "val": val(0.80)},
               {"epoch": 1, "step": 4, "train_loss": 0.5, "lr": 5e-4, "val": val(0.86)}]
    (run / "full").mkdir(parents=True)
    (run / "full" / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (run / "full" / "best.pt").write_bytes(b"full checkpoint")
    write_json(run / "full" / "train_report.json", {
        "dataset": "synthetic", "input_size": [64, 128], "complexity": {"params": 1000, "gmacs": 0.01},
        "best_val": val(0.86), "recipe": {"dataset": "synthetic", "seed": 7, "epochs": 2}})
    write_json(run / "full" / "val_report.json", {"dataset": "synthetic", "split": "val", "ckpt": "run/full/best.pt",
                                                 "metrics": val(0.86), "confusion_matrix": [[1, 0], [0, 1]]})
    (run / "pruned").mkdir()
    (run / "pruned" / "best.pt").write_bytes(b"pruned checkpoint")
    (run / "pruned" / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_loss": 0.4, "val": val(0.85)}) + "\n")
    write_json(run / "pruned" / "train_report.json", {"dataset": "synthetic", "complexity": {"params": 400},
                                                      "recipe": {"seed": 7}})
    latency = {"p50_ms": 2.0, "p90_ms": 2.5, "fps": 500.0, "threads": 2, "backend": "onnxruntime",
               "cpu": "Test CPU 3000"}
    write_json(run / "pruned" / "prune_report.json", {
        "ckpt": "run/full/best.pt", "parent_sha256": report.file_sha256(run / "full" / "best.pt"),
        "settings": {"seed": 7, "threads": 2},
        "original": {"name": "original", "params": 1000, "gmacs": 0.01, "latency": latency, "val": val(0.86),
                     "arch": UNET_ARCH},
        "pruned": {"name": "pruned", "params": 400, "gmacs": 0.004, "latency": latency, "val": val(0.84),
                   "arch": PRUNED_ARCH},
        "finetuned": {"name": "finetuned", "params": 400, "gmacs": 0.004, "latency": latency, "val": val(0.85),
                      "arch": PRUNED_ARCH},
        "summary": {"macs_ratio": 0.4, "params_ratio": 0.4, "latency_speedup": 1.6,
                    "latency_p50_ms_interleaved": {"original": 3.2, "pruned": 2.0}}})
    onnx = tiny_onnx(run / "onnx" / "model_fp32.onnx")
    write_json(run / "onnx" / "model_fp32_report.json", {"precision": "fp32", "parity": {
        "images": 4, "road_iou_candidate": 0.85, "agreement_percent": 100.0, "passed": True}})
    peer = tiny_onnx(run / "peer" / "model_fp32.onnx", stage="init", arch={"name": "lraspp_mobilenet_v3_large"})
    bench_rows = [
        {"name": "peer/model_fp32 (untrained peer)", "path": str(peer), "arch_name": "lraspp_mobilenet_v3_large",
         "backend": "onnxruntime", "threads": 2, "precision": "fp32", "size": [64, 128], "params": 3_000_000,
         "gmacs": 0.06, "p50_ms": 6.0, "p90_ms": 6.5, "fps": 166.7, "road_iou": None, "val": None, "speedup": 1.0},
        {"name": "onnx/model_fp32", "path": str(onnx), "arch_name": "unet", "backend": "onnxruntime", "threads": 2,
         "precision": "fp32", "size": [64, 128], "params": 400, "gmacs": 0.004, "p50_ms": 2.1, "p90_ms": 2.4,
         "fps": 476.2, "road_iou": 0.851, "val": val(0.851), "speedup": 2.86, "pareto": True}]
    write_json(run / "bench" / "benchmark.json", {"covers": "model only", "cpu": "Test CPU 3000", "threads": 2,
                                                  "warmup": 1, "runs_per_round": 5, "rounds": 3,
                                                  "eval": {"dataset": "synthetic", "split": "val"}, "rows": bench_rows})
    video = run / "deploy" / "drive_overlay.mp4"
    video.parent.mkdir()
    video.write_bytes(b"not really a video")
    write_json(run / "deploy" / "drive_overlay.summary.json", {
        "frames": 40, "warmup_frames_excluded": 10, "backend": {"backend": "onnxruntime", "threads": 2,
                                                                "model": str(onnx)},
        "model_only": {"p50_ms": 2.2, "p90_ms": 2.9}, "end_to_end": {"fps": 120.0},
        "road": {**val(0.8), "frames": 40}, "outputs": [str(video)]})
    stages = [("train", "ok", None), ("eval", "ok", None), ("prune", "ok", None),
              ("qat", "failed", "roadseg qat: error: modelopt exploded"),
              ("export-fp32", "ok", None), ("export-qat", "skipped", "needs run/qat/best.pt, which an earlier stage "
                                                                       "did not write"),
              ("engine", "skipped", "roadseg engine: error: no tensorrt"), ("bench", "ok", None),
              ("deploy", "ok", None)]
    write_json(run / "stages.json", {"format": "roadseg-stages/1", "stages": [
        {"name": name, "command": ["roadseg", name, "--seed", "3"], "env": {"OMP_NUM_THREADS": "1"},
         "started": "2026-01-01T00:00:00+00:00",
         "seconds": 1.5, "status": status, "returncode": 0 if status == "ok" else 2,
         **({"reason": reason} if reason else {})} for name, status, reason in stages]})
    return run


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.text, self._row, self._stack = [], [], [], None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._stack.append(tag)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "tr":
            self._row = {"class": attrs.get("class", ""), "cells": []}
        if tag in ("td", "th") and self._row is not None:
            self._row["cells"].append("")

    def handle_endtag(self, tag):
        while self._stack and self._stack.pop() != tag:
            pass
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None and self._row["cells"] and self._stack and self._stack[-1] in ("td", "th"):
            self._row["cells"][-1] += data


def render(run: Path, *extra: str) -> tuple[Page, str]:
    args = report.get_args_parser().parse_args([str(run), *extra])
    assert report.main(args) == 0
    page = Page()
    text = (run / "report.html").read_text(encoding="utf-8")
    page.feed(text)
    page.close()
    return page, (run / "report.md").read_text(encoding="utf-8")


def decode_png(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,"), src[:60]
    data = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.size > 0
    return image


def test_report_is_valid_html_with_embedded_pngs(run_dir, synthetic_root):
    page, markdown = render(run_dir, "--frames", str(synthetic_root), "--frames-count", "3")
    # curves, IoU vs latency, widths, overlay frames: all embedded, nothing fetched from elsewhere
    assert len(page.images) == 4
    for src in page.images:
        decode_png(src)
    html_text = (run_dir / "report.html").read_text()
    assert "http://" not in html_text and "https://" not in html_text
    text = " ".join(page.text)
    assert "Synthetic data" in text and "Synthetic data" in markdown
    assert "false road (false positive)" in text and "missed road (false negative)" in text
    assert "Test CPU 3000" in text
    # provenance: commands, seeds, versions, sha256 of each checkpoint
    assert "OMP_NUM_THREADS=1 roadseg qat --seed 3" in text and "seed 7" in text and "9.9.9" in text
    assert report.file_sha256(run_dir / "full" / "best.pt") in text
    assert not list(run_dir.glob(".report.*"))  # atomic writes left no temporaries


def test_report_lists_every_stage_and_the_failed_one_with_its_reason(run_dir):
    page, markdown = render(run_dir)
    stages = json.loads((run_dir / "stages.json").read_text())["stages"]
    stage_rows = {row["cells"][0]: row for row in page.rows if len(row["cells"]) == 4}
    for stage in stages:
        assert stage["name"] in stage_rows, stage["name"]
        assert stage_rows[stage["name"]]["cells"][1] == stage["status"]
        assert f"| {stage['name']} | {stage['status']} |" in markdown
    failed = stage_rows["qat"]
    assert "failed" in failed["class"] and "modelopt exploded" in failed["cells"][3]
    # the chain table shows it too, with the stages that still ran after it
    chain = [row for row in page.rows if len(row["cells"]) == len(report.CHAIN_HEADER)]
    by_stage = {row["cells"][0]: row for row in chain}
    assert by_stage["qat"]["cells"][2] == "failed: modelopt exploded"  # the stage column names the command
    assert "failed" in by_stage["qat"]["class"]
    assert by_stage["export-fp32"]["cells"][2] == "ok" and by_stage["deploy"]["cells"][2] == "ok"
    assert by_stage["export-qat"]["cells"][2].startswith("skipped: needs")
    assert "1 failed" in " ".join(page.text)


def test_chain_table_figures_and_delta_to_the_full_model(run_dir):
    rows = {row["stage"]: row for row in report.chain_rows(report.scan(run_dir))}
    assert rows["train"]["role"] == "full" and rows["train"]["val"]["road_iou"] == 0.86
    assert rows["train"]["p50"] == 3.2 and rows["prune"]["p50"] == 2.0  # the prune step's interleaved timing
    fp32 = rows["export-fp32"]
    assert fp32["p50"] == 2.1 and fp32["params"] == 6 and "bench" in fp32["timed"]
    assert fp32["delta"] == pytest.approx(100 * (0.851 - 0.86))
    assert rows["export-peer"]["val"] is None and "untrained" in rows["export-peer"]["scored"]
    assert rows["deploy"]["delta"] is None and rows["deploy"]["fps"] == 120.0  # other frames: no delta
    cells = report.chain_cells(rows["deploy"])
    assert "other frames" in cells


def test_report_without_matplotlib_says_so_and_keeps_the_tables(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    page, markdown = render(run_dir)
    assert page.images == []
    assert "matplotlib is not installed" in " ".join(page.text) and "matplotlib is not installed" in markdown
    assert any(row["cells"][0] == "export-fp32" for row in page.rows if row["cells"])


def test_axes_do_not_exaggerate_noise():
    low, high = report.padded_range([85.1, 85.3], report.MIN_IOU_SPAN)
    assert high - low >= report.MIN_IOU_SPAN and low <= 85.1 and high >= 85.3
    low, high = report.padded_range([99.5, 99.9], report.MIN_IOU_SPAN)
    assert high == 100 and high - low >= report.MIN_IOU_SPAN


def test_overlay_colours_false_positives_and_negatives_apart():
    rgb = np.zeros((1, 4, 3), np.uint8)
    predicted, truth = np.array([[1, 1, 0, 0]]), np.array([[1, 0, 1, 255]])
    out = report.overlay_errors(rgb, predicted, truth, alpha=1.0)
    assert tuple(out[0, 0]) == report.TP_RGB and tuple(out[0, 1]) == report.FP_RGB
    assert tuple(out[0, 2]) == report.FN_RGB and tuple(out[0, 3]) == (0, 0, 0)


def test_report_refuses_a_missing_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "roadseg.models.core.command", "report", str(tmp_path / "nope")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no such folder" in result.stderr


# the stage recorder -----------------------------------------------------------------------------
def test_record_keeps_going_and_says_why(tmp_path):
    py = sys.executable
    ok = record(tmp_path, "first", [py, "-c", "print('fine')"], [], optional=False)
    failed = record(tmp_path, "second", [py, "-c", "import sys; print('progress 50%\\r', file=sys.stderr); "
                                             "sys.exit('roadseg x: error: the data is bad')"], [], optional=False)
    skipped = record(tmp_path, "third", [py, "-c", "pass"], [tmp_path / "missing.pt"], optional=False)
    optional = record(tmp_path, "fourth", [py, "-c", "import sys; sys.exit(3)"], [], optional=True)
    assert ok["status"] == "ok" and ok["seconds"] >= 0
    assert failed["status"] == "failed" and failed["reason"] == "roadseg x: error: the data is bad"
    assert skipped["status"] == "skipped" and "missing.pt" in skipped["reason"] and skipped["returncode"] is None
    assert optional["status"] == "skipped" and optional["reason"] == "exit status 3"
    assert [s["name"] for s in read_stages(tmp_path)] == ["first", "second", "third", "fourth"]
    assert all("env" in s for s in read_stages(tmp_path))
    assert check(tmp_path) == 1


def test_last_error_line_prefers_our_one_line_errors():
    assert last_error_line("a\nroadseg t: error: bad\nTraceback...\n  more\n") == "roadseg t: error: bad"
    assert last_error_line("Traceback (most recent call last):\n  ...\nValueError: boom\n") == "ValueError: boom"
    assert last_error_line("") == ""


def test_recorder_command_line(tmp_path):
    base = [sys.executable, "-m", "roadseg.models.core.demo_stages"]
    result = subprocess.run([*base, "record", str(tmp_path), "s", "--needs", str(tmp_path), "--", sys.executable,
                             "-c", "print('hello')"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "hello" in result.stdout
    subprocess.run([*base, "skip", str(tmp_path), "zoo", "no zoo"], check=True, timeout=60)
    assert [(s["name"], s["status"]) for s in read_stages(tmp_path)] == [("s", "ok"), ("zoo", "skipped")]
    assert subprocess.run([*base, "check", str(tmp_path)], timeout=60).returncode == 0


def test_headline_puts_the_zoo_first_with_its_model_card_figures(tmp_path, monkeypatch):
    """When the demo timed shipped zoo models against the peer, the report opens with them, quoting
    their real-road figures from the zoo manifest as such (they are not measured in the run)."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    onnx = tiny_onnx(zoo / "camvid-road.onnx", size=(64, 128))
    manifest = {"format": "roadseg-zoo/1", "models": {"camvid-road": {
        "files": {"onnx": {"file": onnx.name, "sha256": report.file_sha256(onnx)},
                  "openvino_int8": {"file": "camvid-road-int8.xml", "sha256": "0" * 64}}, "dataset": "camvid",
        "arch": "unet", "params": 50262, "input_size": [64, 128],
        "evaluations": {"heldout_drive": {"road_iou": 0.9512}, "in_sequence": {"road_iou": 0.9601}}}}}
    write_json(zoo / "manifest.json", manifest)
    monkeypatch.setenv("ROADSEG_ZOO_DIR", str(zoo))
    run = tmp_path / "run"
    peer = tiny_onnx(run / "zoo" / "peer-64x128" / "model_fp32.onnx", size=(64, 128),
                     arch={"name": "lraspp_mobilenet_v3_large"}, stage="init")
    rows = [{"name": "peer (untrained peer)", "path": str(peer), "arch_name": "lraspp_mobilenet_v3_large",
             "backend": "onnxruntime", "precision": "fp32", "size": [64, 128], "p50_ms": 6.0, "p90_ms": 7.0,
             "fps": 166.7, "speedup": 1.0, "road_iou": None, "threads": 2},
            {"name": "camvid-road", "path": str(onnx), "arch_name": "unet", "backend": "openvino",
             "precision": "fp32", "size": [64, 128], "p50_ms": 2.0, "p90_ms": 2.5, "fps": 500.0, "speedup": 3.0,
             "road_iou": None, "threads": 2},
            {"name": "camvid-road-int8", "path": str(zoo / "camvid-road-int8.xml"), "arch_name": "unet",
             "backend": "openvino", "precision": "int8-ov-ptq", "size": [64, 128], "p50_ms": 1.0, "p90_ms": 1.2,
             "fps": 1000.0, "speedup": 6.0, "road_iou": None, "threads": 2}]
    (zoo / "camvid-road-int8.xml").write_text("<net/>")
    write_json(run / "zoo" / "bench-64x128" / "benchmark.json", {"rows": rows, "cpu": "Test CPU", "threads": 2})
    _, markdown = render(run)
    first = [line for line in markdown.splitlines() if line.strip() and not line.startswith("#")][1]
    assert first.startswith("Model zoo, real roads: camvid-road"), first
    assert "3.00x the speed of the lraspp_mobilenet_v3_large peer" in first
    assert "heldout drive road IoU 95.12%" in first and "from the model card, not measured in this run" in first
    int8 = next(line for line in markdown.splitlines() if line.startswith("Model zoo, real roads: camvid-road-int8"))
    assert "6.00x the speed" in int8 and "its FP32 model: heldout drive road IoU 95.12%" in int8, int8
