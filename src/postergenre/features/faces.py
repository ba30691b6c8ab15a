"""``faces``: how many faces a poster shows, how big and where, and what they express.

Faces are found by RetinaFace (MobileNet-0.25, :mod:`postergenre.features.retinaface`) and
each face's expression is read by the FER2013 mini-XCEPTION
(:mod:`postergenre.features.expression`) from a grey 64x64 crop of a slightly enlarged,
square face box.

Features (areas are fractions of the poster's area, positions fractions of its size):

- ``faces.count``; ``faces.total_area``, ``faces.largest_area``, ``faces.mean_area``;
- ``faces.largest_cx``, ``faces.largest_cy``: centre of the largest face (0 = left / top);
- ``faces.angry`` ... ``faces.neutral``: the 7 expression probabilities averaged over the
  faces weighted by face area (a big face speaks for the poster more than a crowd extra);
- ``faces.max_expression``: the strongest non-neutral expression probability of any face.
  Neutral is left out on purpose: the feature says "some face shows a clear emotion",
  which a neutral face, however confident, does not.

A poster without faces gets zeros everywhere (``faces.count`` = 0 tells the two apart).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from postergenre.errors import ConfigError
from postergenre.features.base import Detection, Extractor, check_rgb

if TYPE_CHECKING:
    from postergenre.features.retinaface import Faces

#: The mini-XCEPTION's classes, in its output order.
EXPRESSIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
_GEOMETRY: tuple[str, ...] = (
    "count",
    "total_area",
    "largest_area",
    "mean_area",
    "largest_cx",
    "largest_cy",
)
FEATURE_NAMES: tuple[str, ...] = tuple(
    f"faces.{n}" for n in (*_GEOMETRY, *EXPRESSIONS, "max_expression")
)


@dataclass(frozen=True)
class FacesConfig:
    #: Long side, in pixels, the detector sees (posters are scaled to it, up or down).
    #: 416 for 160x236 posters: on 200 real posters it finds 95% of the faces that a 640
    #: input finds with score >= 0.9, against 82% at 320 and 97% at 480, at 33, 67 and 27
    #: posters per CPU-second (one thread): small faces (crowds, cast rows) need upscaling.
    input_size: int = 416
    #: Minimum face score kept.
    confidence: float = 0.7
    nms_iou: float = 0.4
    #: At most this many faces per poster (best scores first).
    max_faces: int = 32
    #: How much the square face box grows on each side, as a fraction of its side, for the
    #: expression crop (FER2013 faces show some hair and chin).
    crop_margin: float = 0.2
    #: Posters per forward pass (bounds memory; results do not depend on it).
    batch_size: int = 32
    #: False builds both networks with seeded random weights: for tests without weights.
    pretrained: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 32 <= self.input_size <= 2048:
            raise ConfigError(f"faces: input_size: expected 32..2048, got {self.input_size}")
        if not 0.0 < self.confidence < 1.0:
            raise ConfigError(f"faces: confidence: expected in (0, 1), got {self.confidence}")
        if not 0.0 < self.nms_iou <= 1.0:
            raise ConfigError(f"faces: nms_iou: expected in (0, 1], got {self.nms_iou}")
        if self.max_faces < 1:
            raise ConfigError(f"faces: max_faces: expected >= 1, got {self.max_faces}")
        if not 0.0 <= self.crop_margin <= 2.0:
            raise ConfigError(f"faces: crop_margin: expected 0..2, got {self.crop_margin}")
        if self.batch_size < 1:
            raise ConfigError(f"faces: batch_size: expected >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class _PosterFaces:
    faces: Faces
    #: (k, 7) expression probabilities, one row per face.
    expressions: np.ndarray


class FacesExtractor(Extractor):
    name: ClassVar[str] = "faces"
    version: ClassVar[str] = "1"
    Config: ClassVar[type[Any]] = FacesConfig
    has_detections: ClassVar[bool] = True

    def feature_names(self) -> list[str]:
        return list(FEATURE_NAMES)

    def _load(self, device: str) -> None:
        import torch

        from postergenre.features import expression, retinaface

        cfg: FacesConfig = self.config
        net: torch.nn.Module
        if cfg.pretrained:
            from postergenre import weights

            net = retinaface.load_retinaface(str(weights.resolve("retinaface_mnet025")), device)
            expr = expression.load_mini_xception(weights.resolve("emotion_minixception"), device)
        else:
            # Seeded without touching the caller's global random state.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                random_net = retinaface.RetinaFace()
                expr = expression.MiniXception().to(device).eval()
            net = retinaface.prepare_for_inference(random_net, device, fuse=False)
        self._detector = retinaface.FaceDetector(
            net,
            device,
            input_size=cfg.input_size,
            confidence=cfg.confidence,
            nms_iou=cfg.nms_iou,
            max_faces=cfg.max_faces,
        )
        self._expression = expr

    def _analyse(self, images: Sequence[np.ndarray]) -> list[_PosterFaces]:
        import torch

        from postergenre.features.expression import crop_faces

        assert self.device is not None
        out: list[_PosterFaces] = []
        size = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(images), size):
                chunk = images[start : start + size]
                found = self._detector(chunk)
                with_faces = [i for i, f in enumerate(found) if len(f)]
                crops = crop_faces(
                    [torch.tensor(chunk[i], device=self.device)
                     for i in with_faces],
                    [torch.from_numpy(found[i].boxes).to(self.device) for i in with_faces],
                    margin=self.config.crop_margin,
                )  # fmt: skip
                if crops.shape[0]:
                    probs = self._expression.predict(crops).double().cpu().numpy()
                else:
                    probs = np.zeros((0, len(EXPRESSIONS)))
                offset = 0
                for faces in found:
                    k = len(faces)
                    out.append(_PosterFaces(faces, probs[offset : offset + k]))
                    offset += k
        return out

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Per image, its faces (best score first) with expression probabilities in ``extra``."""
        if self.device is None:
            self.load("auto")
        for i, image in enumerate(images):
            check_rgb(image, where=f"{self.name}: image {i}")
        if len(images) == 0:
            return []
        result = []
        for found in self._analyse(images):
            result.append(
                [
                    Detection(
                        label="face",
                        score=float(score),
                        box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                        extra={e: float(p) for e, p in zip(EXPRESSIONS, probs, strict=True)},
                    )
                    for box, score, probs in zip(
                        found.faces.boxes, found.faces.scores, found.expressions, strict=True
                    )
                ]
            )
        return result

    def _extract(self, images: Sequence[np.ndarray]) -> np.ndarray:
        rows = [
            poster_features(found.faces.boxes, found.expressions, image.shape[0], image.shape[1])
            for found, image in zip(self._analyse(images), images, strict=True)
        ]
        return np.stack(rows).astype(np.float32)


def poster_features(
    boxes: np.ndarray, expressions: np.ndarray, height: int, width: int
) -> np.ndarray:
    """One row of :data:`FEATURE_NAMES` from face boxes (k, 4) in pixels (clipped to the
    image) and their expression probabilities (k, 7)."""
    row = np.zeros(len(FEATURE_NAMES), dtype=np.float64)
    k = boxes.shape[0]
    if k == 0:
        return row
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / float(height * width)
    big = int(np.argmax(areas))
    cx = (boxes[big, 0] + boxes[big, 2]) / 2 / width
    cy = (boxes[big, 1] + boxes[big, 3]) / 2 / height
    weighted = (areas[:, None] * expressions).sum(axis=0) / areas.sum()
    strongest = expressions[:, : EXPRESSIONS.index("neutral")].max()
    geometry = [k, areas.sum(), areas[big], areas.mean(), cx, cy]
    row[:] = [*geometry, *weighted, strongest]
    return row
