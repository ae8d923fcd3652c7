"""The same random weights written in each real file format must give the same
network: vggedge's ONNX output is checked against an independent NHWC reference
(and torch for .pth), within 1e-4 relative error. Catches a wrong fc6
permutation or a swapped channel order."""
from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest

from nhwc_reference import forward_hwio, relative_error
from vggedge.errors import WeightsError
from vggedge.model.export import export_vgg16
from vggedge.model.vgg16 import VGG16Options, build_onnx
from vggedge.model.weights import load_weights
from vggedge.model.weights import npz as npz_module
from vggedge.model.weights.convert import dense_in_out_to_out_in

H = W = 64
CLASSES = 10
OPTS = VGG16Options(include_rescaling=False, include_top=True, num_classes=CLASSES, input_shape=(H, W, 3),
                    classifier_activation=None)
BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
FEAT = (H // 32) * (W // 32) * 512


def tf_layout_arrays(seed: int = 7):
    """13 (HWIO kernel, bias) and 3 ((in, out) kernel, bias), fc6 rows in NHWC order, as the TF port stores them."""
    rng = np.random.default_rng(seed)
    convs, cin = [], 3
    for _, count, cout in BLOCKS:
        for _ in range(count):
            convs.append((rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32),
                          rng.uniform(-0.1, 0.1, cout).astype(np.float32)))
            cin = cout
    dense = [(rng.normal(0, np.sqrt(2 / fin), (fin, fout)).astype(np.float32),
              rng.uniform(-0.1, 0.1, fout).astype(np.float32))
             for fin, fout in ((FEAT, 4096), (4096, 4096), (4096, CLASSES))]
    return convs, dense


def conv_names():
    for block, count, _ in BLOCKS:
        for i in range(1, count + 1):
            yield block, i


def write_npz(path, convs, dense, drop=(), replace=None):
    data = {}
    for (block, i), (k, b) in zip(conv_names(), convs):
        data[f"conv{block}_{i}_W"], data[f"conv{block}_{i}_b"] = k, b
    for name, (k, b) in zip(("fc6", "fc7", "fc8"), dense):
        data[f"{name}_W"], data[f"{name}_b"] = k, b
    data.update(replace or {})
    for key in drop:
        del data[key]
    np.savez(path, **data)
    return path


def keras_layers(convs, dense):
    names = [f"block{b}_conv{i}" for b, i in conv_names()] + ["fc1", "fc2", "predictions"]
    return list(zip(names, convs + dense))


def write_keras2_h5(path, convs, dense, drop=()):
    import h5py

    with h5py.File(path, "w") as f:
        layers = [(n, kb) for n, kb in keras_layers(convs, dense) if n not in drop]
        f.attrs["layer_names"] = [n.encode() for n, _ in layers] + [b"flatten", b"input_1"]
        for name, (k, b) in layers:
            g = f.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g[f"{name}/kernel:0"], g[f"{name}/bias:0"] = k, b
        for empty in ("flatten", "input_1"):
            f.create_group(empty).attrs["weight_names"] = []
    return path


def write_keras3_h5(path, convs, dense):
    import h5py

    with h5py.File(path, "w") as f:
        for name, (k, b) in keras_layers(convs, dense):
            g = f.create_group(f"layers/{name}/vars")
            g["0"], g["1"] = k, b
    return path


def write_keras3_class_named_h5(path, convs, dense, swap=None, drop=()):
    """As Keras 3's save_weights writes a functional VGG16: groups named after the layer class, in layer
    order (conv2d, conv2d_1 ... conv2d_12, dense, dense_1, dense_2), weightless layers with empty vars."""
    import h5py

    keys = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 13)] + ["dense", "dense_1", "dense_2"]
    arrays = dict(zip(keys, convs + dense))
    if swap:
        a, b = swap
        arrays[a], arrays[b] = arrays[b], arrays[a]
    with h5py.File(path, "w") as f:
        for key, (k, b) in arrays.items():
            if key not in drop:
                g = f.create_group(f"layers/{key}/vars")
                g["0"], g["1"] = k, b
        for empty in ("input_layer", "max_pooling2d", "max_pooling2d_1", "flatten"):
            f.create_group(f"layers/{empty}/vars")
        f.create_group("vars")
    return path


def ort_logits(weights_path, x_nhwc, options=OPTS, **kw):
    loaded = load_weights(weights_path, options)
    model = build_onnx(loaded.arrays, options)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))})[0], loaded


@pytest.fixture(scope="module")
def tf_arrays():
    return tf_layout_arrays()


@pytest.fixture(scope="module")
def x_nhwc():
    return np.random.default_rng(1).uniform(-120, 130, (2, H, W, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(tf_arrays, x_nhwc):
    return forward_hwio(x_nhwc, *tf_arrays)


def test_npz_matches_reference(tmp_path, tf_arrays, x_nhwc, reference):
    got, loaded = ort_logits(write_npz(tmp_path / "w.npz", *tf_arrays), x_nhwc)
    assert relative_error(got, reference) < 1e-4
    assert loaded.source == "npz" and loaded.preprocessing.channel_order == "RGB"
    assert loaded.sha256 and len(loaded.sha256) == 64


def test_keras2_h5_matches_reference(tmp_path, tf_arrays, x_nhwc, reference):
    got, loaded = ort_logits(write_keras2_h5(tmp_path / "w.h5", *tf_arrays), x_nhwc)
    assert relative_error(got, reference) < 1e-4
    assert loaded.preprocessing.channel_order == "BGR"
    assert loaded.preprocessing.mean == (103.939, 116.779, 123.68)


def test_keras3_h5_matches_reference(tmp_path, tf_arrays, x_nhwc, reference):
    """Keras 3 layout: read, but what input it expects is left for the user to state."""
    got, loaded = ort_logits(write_keras3_h5(tmp_path / "w.weights.h5", *tf_arrays), x_nhwc)
    assert relative_error(got, reference) < 1e-4
    assert loaded.preprocessing is None and loaded.source == "keras3"


def test_keras3_class_named_groups_read_in_layer_order(tmp_path, tf_arrays, x_nhwc, reference):
    """conv2d_10 comes after conv2d_9 (not after conv2d_1, as HDF5's sorted listing has it)."""
    got, loaded = ort_logits(write_keras3_class_named_h5(tmp_path / "m.weights.h5", *tf_arrays), x_nhwc)
    assert relative_error(got, reference) < 1e-4
    assert loaded.preprocessing is None


def test_keras3_order_and_count_checked(tmp_path, tf_arrays):
    path = write_keras3_class_named_h5(tmp_path / "swap.weights.h5", *tf_arrays, swap=("conv2d_3", "conv2d_4"))
    with pytest.raises(WeightsError, match=r"swap\.weights\.h5: layer 4 of 16 \('block2_conv2', group "
                                           r"'layers/conv2d_3'\) has kernel \(3, 3, 128, 256\) and bias \(256,\), "
                                           r"expected kernel \(3, 3, 128, 128\)"):
        load_weights(path, OPTS)
    path = write_keras3_class_named_h5(tmp_path / "short.weights.h5", *tf_arrays, drop=("conv2d_12",))
    with pytest.raises(WeightsError, match=r"short\.weights\.h5: found 12 convolution weight groups .* expected 13"):
        load_weights(path, OPTS)
    path = write_keras3_class_named_h5(tmp_path / "notop.weights.h5", *tf_arrays, drop=("dense_2",))
    with pytest.raises(WeightsError, match=r"found 2 dense weight groups \['dense', 'dense_1'\], expected 3"):
        load_weights(path, OPTS)
    features = VGG16Options(include_rescaling=False, include_top=False, input_shape=(H, W, 3), pooling="avg")
    assert len(load_weights(path, features).arrays) == 26  # the convolutions alone still load


def test_wrong_fc6_permutation_is_caught(tmp_path, tf_arrays, x_nhwc, reference, monkeypatch):
    """The parity test has teeth: a loader that skips the NHWC->NCHW fc6 permutation fails it."""
    monkeypatch.setattr(npz_module, "nhwc_rows_to_nchw_cols", lambda k, hw, src: dense_in_out_to_out_in(k))
    got, _ = ort_logits(write_npz(tmp_path / "w.npz", *tf_arrays), x_nhwc)
    assert relative_error(got, reference) > 0.05


def test_channel_order_rewiring(tmp_path, tf_arrays, x_nhwc, reference):
    """Keras weights expect BGR; exported for RGB, the model fed RGB gives the BGR model's output."""
    path = write_keras2_h5(tmp_path / "w.h5", *tf_arrays)
    done = export_vgg16(path, tmp_path / "rgb.onnx", OPTS, channel_order="RGB")
    assert done.spec.preprocessing.channel_order == "RGB"
    assert done.spec.preprocessing.mean == (123.68, 116.779, 103.939)
    sess = ort.InferenceSession(str(done.onnx_path), providers=["CPUExecutionProvider"])
    rgb = np.ascontiguousarray(x_nhwc[..., ::-1].transpose(0, 3, 1, 2))
    assert relative_error(sess.run(None, {"images": rgb})[0], reference) < 1e-4
    swapped = np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))
    assert relative_error(sess.run(None, {"images": swapped})[0], reference) > 1e-3


def test_torchvision_pth_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    gen = torch.Generator().manual_seed(3)
    state, cin = {}, 3
    indices = iter((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28))
    for _, count, cout in BLOCKS:
        for _ in range(count):
            i = next(indices)
            state[f"features.{i}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * (2 / (9 * cin)) ** 0.5
            state[f"features.{i}.bias"] = torch.rand(cout, generator=gen) * 0.2 - 0.1
            cin = cout
    for i, (fin, fout) in zip((0, 3, 6), ((FEAT, 4096), (4096, 4096), (4096, CLASSES))):
        state[f"classifier.{i}.weight"] = torch.randn(fout, fin, generator=gen) * (2 / fin) ** 0.5
        state[f"classifier.{i}.bias"] = torch.rand(fout, generator=gen) * 0.2 - 0.1
    torch.save(state, tmp_path / "vgg.pth")

    x = torch.rand(2, 3, H, W, generator=gen) * 4 - 2
    with torch.no_grad():
        y, layer = x.double(), iter(range(13))
        for block, count, _ in BLOCKS:
            for _ in range(count):
                i = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)[next(layer)]
                y = F.relu(F.conv2d(y, state[f"features.{i}.weight"].double(), state[f"features.{i}.bias"].double(), padding=1))
            y = F.max_pool2d(y, 2)
        y = torch.flatten(y, 1)  # NCHW flatten, torchvision's order
        for n, i in enumerate((0, 3, 6)):
            y = F.linear(y, state[f"classifier.{i}.weight"].double(), state[f"classifier.{i}.bias"].double())
            y = F.relu(y) if n < 2 else y
    loaded = load_weights(tmp_path / "vgg.pth", OPTS)
    sess = ort.InferenceSession(build_onnx(loaded.arrays, OPTS).SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.numpy()})[0]
    assert relative_error(got, y.numpy()) < 1e-4
    assert loaded.preprocessing.resize == "shorter_crop" and loaded.preprocessing.scale == pytest.approx(1 / 255)


def test_random_weights_match_reference():
    """Canonical random weights, converted back to the TF layout by hand, give the reference output."""
    from vggedge.model.vgg16 import random_weights

    w = random_weights(OPTS, seed=5)
    convs = [(w[f"block{b}_conv{i}/kernel"].transpose(2, 3, 1, 0), w[f"block{b}_conv{i}/bias"]) for b, i in conv_names()]
    fh, fw = H // 32, W // 32
    fc1 = w["fc1/kernel"].reshape(4096, 512, fh, fw).transpose(2, 3, 1, 0).reshape(FEAT, 4096)
    dense = [(fc1, w["fc1/bias"]), (w["fc2/kernel"].T, w["fc2/bias"]), (w["predictions/kernel"].T, w["predictions/bias"])]
    x = np.random.default_rng(2).uniform(-120, 130, (1, H, W, 3)).astype(np.float32)
    sess = ort.InferenceSession(build_onnx(w, OPTS).SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": x.transpose(0, 3, 1, 2).copy()})[0]
    assert relative_error(got, forward_hwio(x, convs, dense)) < 1e-4
    assert np.array_equal(random_weights(OPTS, seed=5)["fc2/kernel"], w["fc2/kernel"])  # deterministic


# ---- bad input: every message names the file, the layer or key, and what was expected ----

def test_npz_missing_key(tmp_path, tf_arrays):
    path = write_npz(tmp_path / "w.npz", *tf_arrays, drop=["conv3_2_W"])
    with pytest.raises(WeightsError, match=r"w\.npz: missing array 'conv3_2_W'"):
        load_weights(path, OPTS)


def test_npz_wrong_shape_names_layer_and_both_shapes(tmp_path, tf_arrays):
    bad = np.zeros((3, 3, 64, 127), np.float32)
    path = write_npz(tmp_path / "w.npz", *tf_arrays, replace={"conv2_1_W": bad})
    with pytest.raises(WeightsError, match=r"'block2_conv1' kernel has shape \(3, 3, 64, 127\) in the file's HWIO layout, expected \(3, 3, 64, 128\)"):
        load_weights(path, OPTS)


def test_npz_pickles_disabled(tmp_path, tf_arrays):
    evil = np.array([{"a": 1}], dtype=object)
    path = write_npz(tmp_path / "w.npz", *tf_arrays, replace={"conv1_1_W": evil})
    with pytest.raises(WeightsError, match=r"'conv1_1_W' cannot be read without pickles"):
        load_weights(path, OPTS)


def test_h5_missing_layer(tmp_path, tf_arrays):
    path = write_keras2_h5(tmp_path / "w.h5", *tf_arrays, drop=("fc2",))
    with pytest.raises(WeightsError, match=r"w\.h5: missing layer 'fc2'"):
        load_weights(path, OPTS)


def test_wrong_num_classes_names_predictions(tmp_path, tf_arrays):
    path = write_npz(tmp_path / "w.npz", *tf_arrays)
    opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=1000, input_shape=(H, W, 3))
    with pytest.raises(WeightsError, match=r"'predictions' kernel has shape \(4096, 10\) in the file's \(in, out\) layout, expected \(4096, 1000\)"):
        load_weights(path, opts)


def test_wrong_input_size_for_fc1(tmp_path, tf_arrays):
    path = write_npz(tmp_path / "w.npz", *tf_arrays)
    opts = VGG16Options(include_rescaling=False, include_top=True, num_classes=CLASSES)  # 224: fc1 needs 25088 inputs
    with pytest.raises(WeightsError, match=r"'fc1' kernel has shape \(2048, 4096\) in the file's \(in, out\) layout, expected \(25088, 4096\)"):
        load_weights(path, opts)


def test_no_top_ignores_dense_layers(tmp_path, tf_arrays):
    path = write_npz(tmp_path / "w.npz", *tf_arrays, drop=["fc6_W", "fc7_W", "fc8_W"])
    opts = VGG16Options(include_rescaling=False, include_top=False, pooling="avg", input_shape=(H, W, 3))
    assert "fc1/kernel" not in load_weights(path, opts).arrays


def test_pth_without_torch_says_how_to_fix(tmp_path, monkeypatch):
    path = tmp_path / "vgg16.pth"
    path.write_bytes(b"PK\x03\x04not really")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(WeightsError, match=r"vgg16\.pth: reading torchvision \.pth files needs PyTorch"):
        load_weights(path, OPTS)


def test_unknown_format_and_missing_file(tmp_path):
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"\x00" * 16)
    with pytest.raises(WeightsError, match=r"weights\.bin: unknown weight format"):
        load_weights(odd, OPTS)
    with pytest.raises(WeightsError, match=r"nope\.npz: weight file not found"):
        load_weights(tmp_path / "nope.npz", OPTS)
    with pytest.raises(WeightsError, match=r"random:SEED"):
        load_weights("random:abc", OPTS)


def test_corrupt_npz(tmp_path):
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"this is not a zip")
    with pytest.raises(WeightsError, match=r"w\.npz: not a valid npz archive") as info:
        load_weights(bad, OPTS)
    assert "pickle" not in str(info.value)
    bad.write_bytes(np.random.default_rng(0).bytes(4096))  # numpy alone would blame pickles here
    with pytest.raises(WeightsError, match=r"w\.npz: not a valid npz archive") as info:
        load_weights(bad, OPTS)
    assert "pickle" not in str(info.value)
