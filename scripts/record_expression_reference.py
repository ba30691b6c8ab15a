"""Record Keras reference outputs of the FER2013 mini-XCEPTION for the torch parity test.

    pip install keras   # Keras 3; a tool for this script only, not a project dependency
    KERAS_BACKEND=torch python scripts/record_expression_reference.py

Runs ``emotion_model.hdf5`` in Keras itself on a few deterministic inputs (seeded noise
and a grey face crop from ``skimage.data.astronaut()``; nothing from the poster data) and
writes them with Keras' logits and probabilities to
``tests/fixtures/expression_reference.npz``, so the test needs no Keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "expression_reference.npz"
#: A square around the astronaut's face (x0, y0, x1, y1) in the 512x512 image.
ASTRONAUT_FACE = (160, 45, 290, 175)
SEED = 20240601


def astronaut_face() -> np.ndarray:
    """(64, 64) float32 in [-1, 1]: grey (ITU-R 601 luma), bilinear resize."""
    from PIL import Image
    from skimage import data

    rgb = data.astronaut()[
        ASTRONAUT_FACE[1] : ASTRONAUT_FACE[3], ASTRONAUT_FACE[0] : ASTRONAUT_FACE[2]
    ]
    grey = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    small = Image.fromarray(grey.astype(np.float32), mode="F").resize((64, 64), Image.BILINEAR)
    return (np.asarray(small, dtype=np.float32) / 127.5 - 1.0).astype(np.float32)


def main() -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    from postergenre import weights

    model = keras.models.load_model(weights.resolve("emotion_minixception"), compile=False)
    logits_model = keras.Model(model.input, model.get_layer("global_average_pooling2d_1").output)

    rng = np.random.default_rng(SEED)
    noise = rng.uniform(-1.0, 1.0, size=(3, 64, 64)).astype(np.float32)
    inputs = np.concatenate([noise, astronaut_face()[None]], axis=0)  # (N, 64, 64)
    nhwc = inputs[..., None]
    probs = np.asarray(model.predict(nhwc, verbose=0), dtype=np.float32)
    logits = np.asarray(logits_model.predict(nhwc, verbose=0), dtype=np.float32)

    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        inputs=inputs[:, None],  # (N, 1, 64, 64), the torch layout
        logits=logits,
        probs=probs,
        names=np.array(["noise0", "noise1", "noise2", "astronaut_face"]),
        keras_version=np.array(keras.__version__),
        keras_backend=np.array(keras.backend.backend()),
    )
    print(f"wrote {OUT}")
    for name, p in zip(["noise0", "noise1", "noise2", "astronaut_face"], probs, strict=True):
        print(f"  {name:>15}: " + " ".join(f"{v:.4f}" for v in p))


if __name__ == "__main__":
    main()
