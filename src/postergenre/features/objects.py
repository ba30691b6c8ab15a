"""COCO objects on a poster: YOLO11n, per-class counts and covered area.

The pretrained file is Ultralytics' ``yolo11n-seg.pt``. Only its boxes are used, so the
weights are loaded into a detection-only network built, in plain torch
(:mod:`postergenre.features.yolo`), from the checkpoint's own architecture (its ``Segment``
head made a ``Detect`` head with the same box and class branches): same boxes, without
computing mask prototypes. The checkpoint is a pickle of Ultralytics classes, so the first
load unpickles it (with ``ultralytics``) and caches the detector's weights as safetensors;
later loads need neither ``ultralytics`` nor ``torchvision``. Inference skips the
Ultralytics predictor: posters are letterboxed here, a whole batch goes through the
network in one forward pass, and non-maximum suppression is
:func:`postergenre.features.nms.batched_nms`. ``tests/features/test_objects.py`` checks
that the boxes match ``YOLO(path).predict``.

Features, for each of the 80 COCO classes (``objects.<class>.count``, ``objects.<class>.area``;
spaces in class names become underscores, e.g. ``objects.cell_phone.count``), then
``objects.total`` and ``objects.largest_area``:

- ``count``: detections of that class above ``conf`` after NMS.
- ``area``: the area of the *union* of that class's boxes over the image area, in [0, 1].
  A union rather than a clipped sum, so that overlapping boxes (a crowd of people) do not
  count the same pixels twice and the value keeps meaning "share of the poster covered".
- ``total``: all detections; ``largest_area``: the largest single box over the image area.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from postergenre.errors import ConfigError, WeightsError
from postergenre.features.base import Detection, Extractor, check_rgb

if TYPE_CHECKING:
    import torch

#: COCO class names in the order of the model's class indices, as Ultralytics names them.
#: Kept here so that ``feature_names()`` needs no model; ``load`` checks the model agrees.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip

#: The manifest entry of the checkpoint.
WEIGHTS_NAME = "yolo11n-seg"
#: The network's largest stride: letterboxed sides must be multiples of it.
STRIDE = 32
#: Grey of the letterbox padding, the value the model was trained with.
PAD_VALUE = 114
#: Images per forward pass at most, so a caller's huge batch cannot exhaust memory.
MAX_FORWARD_BATCH = 64


def feature_slug(label: str) -> str:
    """``"cell phone"`` -> ``"cell_phone"``, the form used in feature names."""
    return label.replace(" ", "_")


@dataclass(frozen=True)
class ObjectsConfig:
    """Detection settings.

    ``imgsz`` is the target long side of the letterboxed input (the short side is padded
    to the next multiple of 32, so a 160x236 poster becomes a 192x256 canvas at 256).
    Measured on 200 real val posters (conf 0.25): 256 and 320 found as many objects (368
    vs 373 boxes; 204 vs 211 with score >= 0.5) and of the confident ones each missed only
    6-7 that the other found, so 320's upscaling of a 236-pixel poster buys nothing while
    costing 1.5x the compute. 416 found 11% more boxes (235 with score >= 0.5), mostly real
    people and animals 256 missed, at 2.4x the compute of 256: worth it on a GPU
    (``imgsz=416``), too slow for the 2-core default. Every poster is rescaled to this
    size, so a large scan and a small thumbnail of one poster get comparable features.
    ``iou`` 0.5 is stricter than Ultralytics' predict default (0.7), which on the same
    posters kept 6% more boxes, mostly second boxes on the same person; counts are features.
    ``max_det`` caps boxes per poster (after NMS, highest scores kept).
    """

    conf: float = 0.25
    iou: float = 0.5
    imgsz: int = 256
    max_det: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.conf < 1.0:
            raise ConfigError(f"objects: conf must be in [0, 1), got {self.conf}")
        if not 0.0 < self.iou <= 1.0:
            raise ConfigError(f"objects: iou must be in (0, 1], got {self.iou}")
        if self.imgsz < STRIDE or self.imgsz % STRIDE:
            raise ConfigError(
                f"objects: imgsz must be a positive multiple of {STRIDE}, got {self.imgsz}",
                hint="e.g. 256, 320 or 416",
            )
        if self.max_det < 1:
            raise ConfigError(f"objects: max_det must be at least 1, got {self.max_det}")


@dataclass(frozen=True)
class _Letterbox:
    """Where an image lies inside its letterboxed canvas."""

    canvas: tuple[int, int]  # (height, width), multiples of STRIDE
    # Per axis, because rounding the resized sides makes the two ratios differ slightly.
    scale_x: float
    scale_y: float
    left: int
    top: int
    resized: tuple[int, int]  # (height, width) of the resized image


def _letterbox_geometry(height: int, width: int, imgsz: int) -> _Letterbox:
    """Scale the long side to ``imgsz`` and pad each side to a multiple of the stride.

    Same geometry as Ultralytics' predictor (``LetterBox(auto=True)``): the image is
    centred, so the same poster gets the same canvas whatever else is in the batch.
    """
    scale = min(imgsz / height, imgsz / width)
    new_w, new_h = max(round(width * scale), 1), max(round(height * scale), 1)
    pad_w, pad_h = (imgsz - new_w) % STRIDE, (imgsz - new_h) % STRIDE
    left, top = round(pad_w / 2 - 0.1), round(pad_h / 2 - 0.1)
    return _Letterbox(
        (new_h + pad_h, new_w + pad_w), new_w / width, new_h / height, left, top, (new_h, new_w)
    )


def _configure_ultralytics() -> None:
    """Keep Ultralytics offline, quiet on stdout, and its settings file in our home.

    Must run before the first ``import ultralytics``: it reads these at import time
    (``YOLO_OFFLINE`` also stops its import-time DNS probe). A user's own values win.
    """
    # Also read at call time (before any download or online check), so set it regardless.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if "ultralytics" in sys.modules:
        return
    from postergenre import weights

    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(weights.home_dir()))
    # Ultralytics' logger writes to whatever sys.stdout is when it is imported; stdout
    # carries postergenre's results, so its messages must go to stderr instead.
    with contextlib.redirect_stdout(sys.stderr):
        import ultralytics.nn.tasks  # noqa: F401


def _read_checkpoint(path: os.PathLike[str] | str) -> tuple[dict[str, Any], dict[str, str]]:
    """Unpickle Ultralytics' checkpoint; its detector tensors and what rebuilding them needs.

    Needs ``ultralytics`` importable (the pickle refers to its classes). Returns the
    tensors and the metadata of :func:`postergenre.features.yolo.detector_metadata`.
    """
    import torch

    from postergenre import weights
    from postergenre.features import yolo

    _configure_ultralytics()
    # The checkpoint is a pickle (Ultralytics' format); weights.resolve has checked its
    # sha256 against the manifest, so only those known bytes are ever unpickled.
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        source = checkpoint.get("ema")
        source = source if source is not None else checkpoint["model"]
        names = [str(source.names[i]) for i in range(len(source.names))]
        arch = yolo.detection_arch(source.yaml)
        strides = [float(s) for s in source.stride]
        have = source.state_dict()
        eps = {m.eps for m in source.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    except WeightsError:
        raise
    except Exception as exc:  # any unpickling failure means an unusable file/library pair
        raise WeightsError(
            f"objects: could not read {path}: {exc}",
            hint="check that the installed ultralytics can read YOLO11 checkpoints (>=8.3)",
        ) from exc
    if eps != {yolo.BN_EPS}:
        raise WeightsError(
            f"objects: {path} has BatchNorm eps {sorted(eps)}, expected {yolo.BN_EPS}"
        )
    meta = yolo.detector_metadata(arch, names, strides, weights.spec(WEIGHTS_NAME).expected_hash)
    # Built only to list the tensors it needs; the random init is thrown away.
    state = yolo.detector_state(yolo.YoloDetector(arch, strides), have)
    return state, meta


def converted_path() -> Path:
    """Where the detector's weights, converted once from the checkpoint, are cached.

    In the weights cache directory, named after the checkpoint's sha256, so a different
    checkpoint never meets a stale conversion.
    """
    from postergenre import weights

    spec = weights.spec(WEIGHTS_NAME)
    digest = (spec.sha256 or spec.sha256_prefix or "")[:8]
    return weights.cache_dir() / f"{Path(spec.filename).stem}.{digest}.detect.safetensors"


def _read_converted(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    from postergenre import weights

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (no iterator)
    except (OSError, SafetensorError) as exc:
        raise WeightsError(f"objects: {path} is unreadable ({exc})") from exc
    if meta.get("source_sha256") != weights.spec(WEIGHTS_NAME).expected_hash:
        raise WeightsError(f"objects: {path} was converted from another checkpoint")
    return state, meta


def _write_converted(path: Path, state: dict[str, Any], meta: dict[str, str]) -> None:
    """Write atomically: a reader sees the whole file or none. Raises OSError on failure."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from other users of the cache
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, SafetensorError):  # its I/O failures (a full disk) come as these
            raise OSError(str(exc)) from exc
        raise


def _build_detector() -> tuple[Any, list[str]]:
    """The detection-only YOLO network (plain torch, BN folded, frozen) and its class names.

    The first load unpickles Ultralytics' checkpoint (which needs ``ultralytics``) and
    caches its detector weights as safetensors (:func:`converted_path`); later loads read
    only that file, without ``ultralytics`` (whose import, with the unpickling, costs
    seconds of start-up). A damaged cache is rebuilt; an unwritable one costs the
    conversion on every load, with a warning.
    """
    from postergenre import weights
    from postergenre.features import yolo

    cached = converted_path()
    if cached.is_file():
        try:
            return yolo.build_detector(*_read_converted(cached))
        except WeightsError as exc:
            warnings.warn(f"{exc.message}; converting the checkpoint again", stacklevel=3)
    state, meta = _read_checkpoint(weights.resolve(WEIGHTS_NAME))
    try:
        _write_converted(cached, state, meta)
    except OSError as exc:
        warnings.warn(
            f"objects: could not cache the converted detector at {cached} ({exc}); "
            "each load will read the Ultralytics checkpoint (slower)",
            stacklevel=3,
        )
    return yolo.build_detector(state, meta)


def _union_area(boxes: np.ndarray) -> float:
    """Exact area of the union of (k, 4) xyxy boxes, by coordinate compression."""
    if len(boxes) == 0:
        return 0.0
    xs = np.unique(boxes[:, [0, 2]])
    ys = np.unique(boxes[:, [1, 3]])
    covered = np.zeros((len(ys) - 1, len(xs) - 1), dtype=bool)
    x0, x1 = np.searchsorted(xs, boxes[:, 0]), np.searchsorted(xs, boxes[:, 2])
    y0, y1 = np.searchsorted(ys, boxes[:, 1]), np.searchsorted(ys, boxes[:, 3])
    for a, b, c, d in zip(y0, y1, x0, x1, strict=True):
        covered[a:b, c:d] = True
    cell = np.outer(np.diff(ys), np.diff(xs))
    return float(cell[covered].sum())


class ObjectsExtractor(Extractor):
    """Counts and covered area of the 80 COCO classes, from YOLO11n boxes."""

    name: ClassVar[str] = "objects"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = ObjectsConfig
    has_detections: ClassVar[bool] = True

    config: ObjectsConfig

    def __init__(self, config: ObjectsConfig | None = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.model_: Any = None
        self.class_names_: tuple[str, ...] = COCO_CLASSES

    def feature_names(self) -> list[str]:
        names = []
        for label in COCO_CLASSES:
            slug = feature_slug(label)
            names += [f"objects.{slug}.count", f"objects.{slug}.area"]
        return [*names, "objects.total", "objects.largest_area"]

    def _load(self, device: str) -> None:
        model, names = _build_detector()
        got = tuple(names)
        if got != COCO_CLASSES:
            raise WeightsError(
                "objects: the model's class names differ from the 80 COCO names this "
                f"extractor's features are named after (got {len(got)}: {got[:5]}...)",
                hint="use the yolo11n-seg file from the manifest",
            )
        self.model_ = model.to(device)
        self.class_names_ = got

    # -- inference --------------------------------------------------------------------
    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Boxes on each image: label (COCO name), score, (x0, y0, x1, y1) in its pixels."""
        if self.device is None:
            self.load("auto")
        for i, image in enumerate(images):
            check_rgb(image, where=f"{self.name}: image {i}")
        out: list[list[Detection]] = []
        for boxes, scores, classes in self._detect_arrays(images):
            out.append(
                [
                    Detection(
                        self.class_names_[c], float(s), (float(x0), float(y0), float(x1), float(y1))
                    )
                    for (x0, y0, x1, y1), s, c in zip(boxes, scores, classes, strict=True)
                ]
            )
        return out

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        n_classes = len(COCO_CLASSES)
        rows = np.zeros((len(images), 2 * n_classes + 2), dtype=np.float32)
        for row, image, (boxes, _, classes) in zip(
            rows, images, self._detect_arrays(images), strict=True
        ):
            image_area = float(image.shape[0] * image.shape[1])
            row[0 : 2 * n_classes : 2] = np.bincount(classes, minlength=n_classes)
            for c in np.unique(classes):
                row[2 * c + 1] = min(_union_area(boxes[classes == c]) / image_area, 1.0)
            row[-2] = len(classes)
            if len(classes):
                sides = boxes[:, 2:] - boxes[:, :2]
                row[-1] = float((sides[:, 0] * sides[:, 1]).max()) / image_area
        return rows

    def _detect_arrays(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per image: boxes (k, 4) float64 xyxy pixels, scores (k,), class indices (k,) int."""
        geometry = [
            _letterbox_geometry(im.shape[0], im.shape[1], self.config.imgsz) for im in images
        ]
        results: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
            (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
        ] * len(images)
        # One forward pass per canvas shape: an image's canvas never depends on its batch.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, g in enumerate(geometry):
            groups.setdefault(g.canvas, []).append(i)
        for canvas, members in sorted(groups.items()):
            for start in range(0, len(members), MAX_FORWARD_BATCH):
                chunk = members[start : start + MAX_FORWARD_BATCH]
                batch = self._letterbox_batch(
                    [images[i] for i in chunk], [geometry[i] for i in chunk], canvas
                )
                for i, found in zip(chunk, self._forward(batch), strict=True):
                    results[i] = self._to_image_pixels(found, geometry[i], images[i].shape)
        return results

    def _letterbox_batch(
        self, images: list[np.ndarray], geometry: list[_Letterbox], canvas: tuple[int, int]
    ) -> np.ndarray:
        import cv2

        batch = np.full((len(images), canvas[0], canvas[1], 3), PAD_VALUE, dtype=np.uint8)
        for slot, image, g in zip(batch, images, geometry, strict=True):
            h, w = g.resized
            if image.shape[:2] != (h, w):
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            slot[g.top : g.top + h, g.left : g.left + w] = image
        return batch

    def _forward(self, batch: np.ndarray) -> list[torch.Tensor]:
        """(n, H, W, 3) uint8 canvases -> per image an (k, 6) tensor: x0 y0 x1 y1 score class."""
        import torch

        from postergenre.features.nms import batched_nms

        cfg = self.config
        with torch.inference_mode():
            # NHWC uint8 viewed as NCHW is channels_last memory, which the convs take as is.
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
            pred = self.model_(x)  # (n, 4 + nc, anchors)
            n = pred.shape[0]
            scores, classes = pred[:, 4:, :].max(dim=1)  # best class per anchor, as Ultralytics
            image_idx, anchor_idx = torch.nonzero(scores > cfg.conf, as_tuple=True)
            xywh = pred[image_idx, :4, anchor_idx]
            boxes = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), dim=1)
            kept_scores = scores[image_idx, anchor_idx]
            kept_classes = classes[image_idx, anchor_idx]
            # Class-aware NMS, separately per image: one group per (image, class).
            group = image_idx * (pred.shape[1] - 4) + kept_classes
            keep = batched_nms(boxes, kept_scores, group, cfg.iou)  # sorted by score
            found = torch.cat(
                (boxes[keep], kept_scores[keep, None], kept_classes[keep, None].float()), dim=1
            ).cpu()
            owner = image_idx[keep].cpu()
        return [found[owner == i][: cfg.max_det] for i in range(n)]

    @staticmethod
    def _to_image_pixels(
        found: torch.Tensor, g: _Letterbox, shape: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arr = found.numpy().astype(np.float64)
        offset = np.array([g.left, g.top] * 2, dtype=np.float64)
        gain = np.array([g.scale_x, g.scale_y] * 2)
        boxes = (arr[:, :4] - offset) / gain
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, shape[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, shape[0])
        return boxes, arr[:, 4], arr[:, 5].astype(np.int64)
