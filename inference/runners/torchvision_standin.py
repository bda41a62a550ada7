"""The two torchvision functions facenet_pytorch's MTCNN imports, for a process without
torchvision (PyPI's torchvision wheel does not load beside the CPU torch, and the
portal never installs it).

`facenet_modules()` registers stand-in `torchvision` modules only while facenet_pytorch is
imported, then takes them out of `sys.modules` again: the detector keeps the functions it
bound, and transformers (which probes for torchvision) still finds none. The functions
match torchvision's: `batched_nms` as `torchvision.ops.boxes.batched_nms` (greedy
non-maximum suppression per category, boxes as x1, y1, x2, y2, indices best first) and
`to_tensor` as `torchvision.transforms.functional.to_tensor` (HWC -> CHW, uint8 scaled
to [0, 1]).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

STANDIN_MODULES = (
    "torchvision",
    "torchvision.ops",
    "torchvision.ops.boxes",
    "torchvision.transforms",
    "torchvision.transforms.functional",
)


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one box with each of `boxes`; areas as torchvision computes them (no +1)."""
    left = torch.maximum(box[0], boxes[:, 0])
    top = torch.maximum(box[1], boxes[:, 1])
    right = torch.minimum(box[2], boxes[:, 2])
    bottom = torch.minimum(box[3], boxes[:, 3])
    inter = (right - left).clamp(min=0) * (bottom - top).clamp(min=0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Keeps the best box, drops those overlapping it by more than the threshold, repeats;
    the kept indices in decreasing score."""
    order = torch.argsort(scores, descending=True, stable=True)
    keep: list[int] = []
    while order.numel():
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if not rest.numel():
            break
        overlap = box_iou(boxes[best].double(), boxes[rest].double())
        order = rest[overlap <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category of `idxs`: boxes of different categories never suppress
    each other (torchvision offsets each category's boxes apart; this is the same)."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def to_tensor(picture: Any) -> torch.Tensor:
    """A PIL image or an HxW(xC) array as a CxHxW tensor; uint8 values scaled to [0, 1]."""
    array = np.array(picture, copy=True)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.transpose((2, 0, 1))).contiguous()
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.get_default_dtype()).div(255)
    return tensor


def _standins() -> dict[str, types.ModuleType]:
    made = {name: types.ModuleType(name) for name in STANDIN_MODULES}
    made["torchvision.ops.boxes"].batched_nms = batched_nms
    made["torchvision.ops.boxes"].nms = nms
    made["torchvision.ops"].boxes = made["torchvision.ops.boxes"]
    made["torchvision.transforms.functional"].to_tensor = to_tensor
    made["torchvision.transforms"].functional = made["torchvision.transforms.functional"]
    made["torchvision"].ops = made["torchvision.ops"]
    made["torchvision"].transforms = made["torchvision.transforms"]
    return made


@contextmanager
def facenet_modules() -> Iterator[None]:
    """The stand-ins in `sys.modules` for the duration of the block (an import of
    facenet_pytorch), and gone after it."""
    if any(name in sys.modules for name in STANDIN_MODULES):
        raise RuntimeError("a torchvision module is already loaded; the stand-in would hide it")
    sys.modules.update(_standins())
    try:
        yield
    finally:
        for name in STANDIN_MODULES:
            sys.modules.pop(name, None)
