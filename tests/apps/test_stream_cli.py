"""`vggedge stream` from the command line: outputs, SIGTERM stop with a summary and a playable video."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2

from vggedge.cli import main


def frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def test_cli_writes_json_and_video(stream_model: Path, calib_clip: Path, tmp_path: Path, capsys) -> None:
    out, jsonl = tmp_path / "out.mp4", tmp_path / "r.jsonl"
    rc = main(["stream", str(calib_clip), "--model", str(stream_model), "--output", str(out), "--json", str(jsonl),
               "--batch-size", "4"])
    assert rc == 0
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(36))
    assert frame_count(out) == 36
    err = capsys.readouterr().err
    assert "36 classified" in err and "p95" in err


def test_cli_sinks_by_uri(stream_model: Path, calib_clip: Path, tmp_path: Path, capsys) -> None:
    """``--sink URI`` (repeatable) opens each output through open_sink; a URI it cannot serve is named."""
    jsonl, video = tmp_path / "r.jsonl", tmp_path / "v.avi"
    rc = main(["stream", str(calib_clip), "--model", str(stream_model), "--sink", str(jsonl),
               "--sink", f"file://{video}", "--max-frames", "5"])
    assert rc == 0 and len(jsonl.read_text().splitlines()) == 5 and frame_count(video) == 5
    assert main(["stream", str(calib_clip), "--model", str(stream_model), "--sink", "rtmp://x"]) == 1
    assert "output 'rtmp://x': no sink for this URI" in capsys.readouterr().err


def test_cli_unopenable_source_message(stream_model: Path, tmp_path: Path, capsys) -> None:
    rc = main(["stream", str(tmp_path / "gone.mp4"), "--model", str(stream_model)])
    assert rc == 1
    assert f"vggedge: error: {tmp_path / 'gone.mp4'}: no such video file" in capsys.readouterr().err


def test_sigterm_stops_cleanly_and_video_plays(stream_model: Path, calib_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "live.mp4"
    proc = subprocess.Popen([sys.executable, "-c", "from vggedge.cli import run; run()", "stream", str(calib_clip), "--model",
                             str(stream_model), "--pace", "--loop", "--output", str(out), "--json", "-", "--serve", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines = []
    try:
        while len(lines) < 8:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += stdout.splitlines()
    assert proc.returncode == 130, stderr
    assert "classified" in stderr and "e2e" in stderr and "Traceback" not in stderr
    assert "preview: http://127.0.0.1:" in stderr  # the preview server ran and was stopped with the rest
    rows = [json.loads(line) for line in lines if line.strip()]  # stdout carries JSON lines only
    assert [r["frame"] for r in rows] == sorted(r["frame"] for r in rows)
    assert frame_count(out) == len(rows)  # finalised: every classified frame plays
