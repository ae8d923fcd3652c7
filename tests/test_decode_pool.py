"""vggedge/decode_pool.py: one pool over all cores, per-file errors, reduced decoding, no nested deadlock."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from vggedge.decode_pool import THREAD_PREFIX, DecodePool, bounded_map, default_workers, shared_pool
from vggedge.errors import ConfigError, ImageError
from vggedge.preprocess import prepare
from vggedge.spec import RAW_PIXELS, ModelSpec

REPO = Path(__file__).resolve().parents[1]
PHOTOS = sorted((REPO / "calib").glob("*.jpg"))
SPEC = ModelSpec(height=32, width=32, preprocessing=RAW_PIXELS)


def test_prepare_into_matches_one_thread_and_keeps_bad_files_as_their_error(tmp_path: Path) -> None:
    empty, broken = tmp_path / "empty.jpg", tmp_path / "broken.jpg"
    empty.write_bytes(b"")
    broken.write_bytes(PHOTOS[0].read_bytes()[:200])  # a JPEG header, then nothing decodable
    sources = [PHOTOS[0], empty, PHOTOS[1], tmp_path / "missing.png", broken, PHOTOS[2]]
    out = np.full((8, *SPEC.input_shape[1:]), -1, np.float32)
    with DecodePool(3) as pool:
        rows, errors = pool.prepare_into(sources, SPEC, out)
    assert rows == [0, 2, 5]
    assert sorted(errors) == [1, 3, 4] and all(isinstance(e, ImageError) for e in errors.values())
    assert "empty.jpg" in str(errors[1]) and "missing.png" in str(errors[3])
    for row, offset in enumerate(rows):  # good rows packed first, equal to the one-thread path
        np.testing.assert_array_equal(out[row], prepare(sources[offset], SPEC))


def test_reduced_decode_reaches_the_workers() -> None:
    spec = ModelSpec(height=16, width=16, preprocessing=RAW_PIXELS)
    big = max(PHOTOS, key=lambda p: p.stat().st_size)
    out = np.empty((2, *spec.input_shape[1:]), np.float32)
    with DecodePool(2) as pool:
        pool.prepare_into([big, big], spec, out, reduced_decode=True)
        reduced = out.copy()
        pool.prepare_into([big, big], spec, out, reduced_decode=False)
    np.testing.assert_array_equal(reduced[0], prepare(big, spec, reduced_decode=True))
    np.testing.assert_array_equal(out[0], prepare(big, spec, reduced_decode=False))
    assert not np.array_equal(reduced[0], out[0])  # a DCT-scaled decode really happened


def test_work_runs_on_the_pool_threads_and_nested_use_runs_inline() -> None:
    names: list[str] = []
    with DecodePool(2) as pool:
        def inner(x: int) -> int:
            names.append(threading.current_thread().name)
            return x * 2

        def outer(x: int) -> list[int]:  # from a pool thread: must not wait on its own (busy) pool
            return pool.map(inner, [x, x + 1])

        assert pool.map(outer, [1, 3, 5, 7]) == [[2, 4], [6, 8], [10, 12], [14, 16]]
    assert names and all(name.startswith(THREAD_PREFIX) for name in names)
    with pytest.raises(ConfigError, match="after close"):
        pool.map(inner, [1])


def test_one_worker_is_inline_and_exceptions_surface() -> None:
    with DecodePool(1) as pool:
        assert pool.map(lambda _: threading.current_thread().name, [0]) == [threading.current_thread().name]
        with pytest.raises(ZeroDivisionError):
            pool.map(lambda x: 1 // x, [1, 0])
    with pytest.raises(ConfigError, match="decode workers=0"):
        DecodePool(0)


def test_bounded_map_keeps_order_and_limits_what_is_in_flight() -> None:
    submitted: list[int] = []
    with DecodePool(2) as pool:
        def submit(fn, item):
            submitted.append(item)
            return pool.submit(fn, item)

        gen = bounded_map(submit, lambda x: x * x, range(10), ahead=3)
        assert next(gen) == 0 and len(submitted) == 3  # nothing read ahead beyond the limit
        assert list(gen) == [x * x for x in range(1, 10)]
        assert list(pool.imap(str, range(5), ahead=2)) == ["0", "1", "2", "3", "4"]


def test_shared_pool_is_one_pool_over_every_core() -> None:
    assert shared_pool() is shared_pool()
    assert shared_pool().workers == default_workers() >= 1


def test_one_and_many_threads_give_the_same_batch() -> None:
    """Speed is measured by benchmarks/decode_pool_bench.py, never here; the bytes must be identical."""
    out1 = np.empty((len(PHOTOS), *SPEC.input_shape[1:]), np.float32)
    outn = np.empty_like(out1)
    with DecodePool(1) as one, DecodePool(4) as many:
        one.prepare_into(PHOTOS, SPEC, out1)
        many.prepare_into(PHOTOS, SPEC, outn)
    np.testing.assert_array_equal(out1, outn)
