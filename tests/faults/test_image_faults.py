"""A phone photo stored sideways with EXIF Orientation=6 is classified upright, through the CLI."""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import cv2
import pytest

from faultkit import CALIB, vggedge


def exif_jpeg(image, orientation: int) -> bytes:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    tiff = b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", 1) + struct.pack("<HHIH", 0x0112, 3, 1,
                                                                                      orientation) + b"\0\0\0\0\0\0"
    payload = b"Exif\0\0" + tiff
    data = encoded.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def rows(stdout: str) -> list[dict]:
    """classify --json output: a JSON array, or one JSON object per line."""
    try:
        data = json.loads(stdout)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        return [json.loads(line) for line in stdout.splitlines() if line.strip().startswith("{")]


@pytest.fixture(scope="module")
def top_model(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("faults-top")
    result = vggedge("export", "--weights", "random:3", "--input-shape", "32,32,3", "--include-top",
                     "--num-classes", "10", "--classifier-activation", "none", "--out", folder / "m.onnx")
    assert result.returncode == 0, result.stderr
    yield folder / "m.onnx"
    shutil.rmtree(folder, ignore_errors=True)


def test_exif_rotated_phone_photo_scores_like_the_upright_one(top_model: Path, tmp_path: Path) -> None:
    scene = cv2.imread(str(CALIB / "rocket.jpg"), cv2.IMREAD_COLOR)  # tall and asymmetric
    stored = cv2.rotate(scene, cv2.ROTATE_90_COUNTERCLOCKWISE)  # what a phone's sensor records
    upright, phone, sideways = tmp_path / "upright.jpg", tmp_path / "phone.jpg", tmp_path / "sideways.jpg"
    upright.write_bytes(exif_jpeg(scene, 1))
    phone.write_bytes(exif_jpeg(stored, 6))  # tagged: viewers show it upright
    sideways.write_bytes(exif_jpeg(stored, 1))  # the same pixels untagged: really sideways
    result = vggedge("classify", "--model", top_model, "--top-k", "10", "--json", upright, phone, sideways)
    assert result.returncode == 0, result.stderr
    logits = {Path(r["image"]).name: {p["index"]: p["score"] for p in r["top_k"]} for r in rows(result.stdout)}

    def distance(a: str, b: str) -> float:
        return sum(abs(logits[a][i] - logits[b][i]) for i in range(10))

    assert distance("upright.jpg", "phone.jpg") < 0.2 * distance("upright.jpg", "sideways.jpg")
    assert max(logits["phone.jpg"], key=logits["phone.jpg"].get) == max(logits["upright.jpg"],
                                                                        key=logits["upright.jpg"].get)
