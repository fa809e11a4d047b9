"""Run one stage of a chain (``make demo``) and record its status, time and one-line reason in ``RUN_DIR/stages.json``.

    python -m roadseg.models.core.demo_stages record runs/demo train -- roadseg train --out runs/demo/full ...
    python -m roadseg.models.core.demo_stages record runs/demo eval --needs runs/demo/full/best.pt -- roadseg eval ...
    python -m roadseg.models.core.demo_stages record runs/demo engine --optional -- roadseg engine ...
    python -m roadseg.models.core.demo_stages skip runs/demo zoo "no models/zoo/manifest.json yet"
    python -m roadseg.models.core.demo_stages check runs/demo     # exit 1 when a stage failed
    python -m roadseg.models.core.demo_stages zoo-sizes           # "HxW name ..." per input size of the zoo

``record`` runs the command with its output shown as it comes, and appends to ``stages.json`` the
stage's name, command, status, exit code, seconds and, when it did not succeed, its reason: the
last ``error:`` line of its stderr (else the last line), and the thread and device variables set
(``OMP_NUM_THREADS``, ...). It always exits 0, so that the chain goes
on with the stages that can still run:

- ``ok``: exit 0;
- ``failed``: a non-zero exit;
- ``skipped``: a ``--needs`` file is missing (an earlier stage did not write it; the command is not
  run), or an ``--optional`` stage did not succeed (e.g. TensorRT on a machine without a GPU).

``check`` prints the stages that failed and exits 1 when there is one. Standard library only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from roadseg.models.core.fileio import atomic_write_json

FORMAT = "roadseg-stages/1"
STAGES_FILE = "stages.json"
TAIL_BYTES = 16384
# environment variables that change what a stage computes or how fast: recorded with its command when set
RECORDED_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def read_stages(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / STAGES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("stages"), list):
        raise ValueError(f"{path}: not a {FORMAT} file")
    return data["stages"]


def append_stage(run_dir: Path, record: dict) -> None:
    stages = [s for s in read_stages(run_dir) if s.get("name") != record["name"]] + [record]
    atomic_write_json(Path(run_dir) / STAGES_FILE, {"format": FORMAT, "stages": stages})


def last_error_line(stderr_tail: str) -> str:
    """The last ``...: error: ...`` line (our one-line errors), else the last non-empty line (a traceback's)."""
    lines = [ANSI.sub("", line).strip() for line in re.split(r"[\r\n]+", stderr_tail)]
    lines = [line for line in lines if line]
    errors = [line for line in lines if ": error: " in line or line.startswith("error: ")]
    return (errors or lines or [""])[-1][:500]


def run_streaming(command: list[str]) -> tuple[int, str]:
    """Run ``command``, its stdout inherited and its stderr echoed as it comes; (exit code, stderr tail)."""
    try:
        process = subprocess.Popen(command, stderr=subprocess.PIPE)
    except OSError as err:
        return 127, f"error: cannot start {command[0]}: {err.strerror}"
    tail = b""
    while chunk := os.read(process.stderr.fileno(), 4096):
        sys.stderr.buffer.write(chunk)
        sys.stderr.buffer.flush()
        tail = (tail + chunk)[-TAIL_BYTES:]
    process.stderr.close()
    return process.wait(), tail.decode("utf-8", errors="replace")


def record(run_dir: Path, name: str, command: list[str], needs: list[Path], optional: bool) -> dict:
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry = {"name": name, "command": command, "started": started,
             "env": {key: os.environ[key] for key in RECORDED_ENV if key in os.environ}}
    missing = [str(path) for path in needs if not Path(path).exists()]
    if missing:
        entry.update(status="skipped", returncode=None, seconds=0.0,
                     reason=f"needs {', '.join(missing)}, which an earlier stage did not write")
    else:
        start = time.perf_counter()
        code, tail = run_streaming(command)
        entry.update(returncode=code, seconds=round(time.perf_counter() - start, 2))
        if code == 0:
            entry["status"] = "ok"
        else:
            entry["status"] = "skipped" if optional else "failed"
            entry["reason"] = last_error_line(tail) or f"exit status {code}"
    append_stage(run_dir, entry)
    if entry["status"] != "ok":
        print(f"== stage {name} {entry['status']}: {entry['reason']}", file=sys.stderr)
    return entry


def check(run_dir: Path) -> int:
    failed = [s for s in read_stages(run_dir) if s.get("status") == "failed"]
    for stage in failed:
        print(f"stage {stage['name']} failed: {stage.get('reason', '')}", file=sys.stderr)
    return 1 if failed else 0


def zoo_sizes(zoo_dir: Path | None = None) -> dict[str, list[str]]:
    """The zoo's models that have an ONNX file (and their INT8 IRs, as ``NAME-int8``), grouped by their
    manifest ``input_size`` as ``HxW``."""
    from roadseg.models.core.zoo import INT8_SUFFIX, read_manifest

    sizes: dict[str, list[str]] = {}
    for name, entry in sorted(read_manifest(zoo_dir)["models"].items()):
        size = entry.get("input_size")
        if "onnx" not in entry.get("files", {}):
            continue
        if not (isinstance(size, list) and len(size) == 2):
            print(f"note: zoo model {name} has no input_size in the manifest; not timed", file=sys.stderr)
            continue
        sizes.setdefault(f"{size[0]}x{size[1]}", []).append(name)
        if "openvino_int8" in entry["files"] and importlib.util.find_spec("openvino") is not None:
            sizes[f"{size[0]}x{size[1]}"].append(name + INT8_SUFFIX)
    return sizes


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m roadseg.models.core.demo_stages", add_help=add_help,
                                     description="Run a chain's stages and record their status and time.")
    sub = parser.add_subparsers(dest="action", required=True)
    rec = sub.add_parser("record", help="run one stage and record it in RUN_DIR/stages.json")
    rec.add_argument("run_dir", type=Path)
    rec.add_argument("name")
    rec.add_argument("--needs", type=Path, nargs="+", default=[], metavar="FILE",
                     help="skip the stage (not run) when one of these is missing")
    rec.add_argument("--optional", action="store_true", help="a non-zero exit is 'skipped', not 'failed'")
    rec.epilog = "the stage's command follows --"
    skip = sub.add_parser("skip", help="record a stage that is not run, with its reason")
    skip.add_argument("run_dir", type=Path)
    skip.add_argument("name")
    skip.add_argument("reason")
    chk = sub.add_parser("check", help="exit 1 when a stage of RUN_DIR failed")
    chk.add_argument("run_dir", type=Path)
    sub.add_parser("zoo-sizes", help="print 'HxW name ...' per input size of the zoo's ONNX models")
    return parser


def main(args: argparse.Namespace) -> int:
    if args.action == "check":
        return check(args.run_dir)
    if args.action == "skip":
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        append_stage(args.run_dir, {"name": args.name, "command": [], "started": started, "status": "skipped",
                                    "returncode": None, "seconds": 0.0, "reason": args.reason})
        print(f"== stage {args.name} skipped: {args.reason}", file=sys.stderr)
        return 0
    if args.action == "zoo-sizes":
        for size, names in zoo_sizes().items():
            print(size, *names)
        return 0
    command = getattr(args, "cmd", [])
    if not command:
        from roadseg.models.core.cli import ToolError

        raise ToolError("record: no command after --")
    record(args.run_dir, args.name, command, args.needs, args.optional)
    return 0


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the stage's command): everything after the first ``--`` is the command."""
    if "--" not in argv:
        return argv, []
    at = argv.index("--")
    return argv[:at], argv[at + 1:]


if __name__ == "__main__":
    from roadseg.models.core.cli import run

    own, stage_command = split_command(sys.argv[1:])
    parser = get_args_parser()
    parser.set_defaults(cmd=stage_command)
    run(main, parser, own)
