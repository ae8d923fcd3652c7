"""The PyTorch peer of the benchmarks: VGG16 in torch with the weights of one of vggedge's ONNX exports."""
from __future__ import annotations

from pathlib import Path


def torch_vgg16(model: Path, softmax: bool = True):
    """VGG16 as a torch ``nn.Sequential`` (eval mode, FP32, on the CPU) with the weights of an exported ONNX
    file (its initializers), logits or softmax out: the PyTorch peer of every benchmark."""
    import onnx
    import torch
    from onnx import numpy_helper

    from vggedge.model.vgg16 import VGG16_CFG, conv_layers

    weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in onnx.load(model).graph.initializer}
    layers, cin, names = [], 3, iter(conv_layers())
    for item in VGG16_CFG:
        if item == "M":
            layers.append(torch.nn.MaxPool2d(2))
            continue
        name, cout = next(names)
        conv = torch.nn.Conv2d(cin, cout, 3, padding=1)
        conv.weight.data, conv.bias.data = weights[f"{name}.kernel"], weights[f"{name}.bias"]
        layers += [conv, torch.nn.ReLU()]
        cin = cout
    layers.append(torch.nn.Flatten())
    for i, name in enumerate(("fc1", "fc2", "predictions")):
        w = weights[f"{name}.kernel"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.weight.data, lin.bias.data = w, weights[f"{name}.bias"]
        layers += [lin] + ([torch.nn.ReLU()] if i < 2 else ([torch.nn.Softmax(dim=1)] if softmax else []))
    return torch.nn.Sequential(*layers).eval()
