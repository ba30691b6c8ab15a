"""EfficientNet-Lite: TensorFlow "SAME" padding, the files' layout, real-weight behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_poster, require_weights

from postergenre.errors import ConfigError
from postergenre.features.cnn import CNNConfig, CNNExtractor, pad_colour

torch = pytest.importorskip("torch")

from postergenre.features.efficientnet_lite import (  # noqa: E402
    VARIANTS,
    EfficientNetLite,
    same_pad,
)

VARIANT_NAMES = sorted(VARIANTS)


@pytest.mark.parametrize(
    ("size", "kernel", "stride"), [(8, 3, 2), (9, 3, 2), (10, 5, 2), (7, 5, 1)]
)
def test_same_pad_gives_ceil_outputs_with_the_extra_pixel_right_and_bottom(
    size: int, kernel: int, stride: int
) -> None:
    conv = torch.nn.Conv2d(1, 1, kernel, stride, bias=False)
    x = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size)
    padded = same_pad(x, conv)
    assert conv(padded).shape[-1] == -(-size // stride)
    total = padded.shape[-1] - size
    assert total == max((-(-size // stride) - 1) * stride + kernel - size, 0)
    # The original image sits total // 2 from the top-left corner: the odd pixel goes last.
    top = total // 2
    assert torch.equal(padded[..., top : top + size, top : top + size], x)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_layout_has_the_stride_32_map_and_the_files_block_count(variant: str) -> None:
    model = EfficientNetLite(variant).eval()
    blocks = sum(n for *_, n in VARIANTS[variant])
    assert (
        len(model._blocks)
        == blocks
        == {"efficientnet_lite0": 16, "efficientnet_lite2": 21}[variant]
    )
    with torch.inference_mode():
        fmap = model.features(torch.randn(1, 3, 96, 64))
        logits = model(torch.randn(2, 3, 64, 64))
    assert fmap.shape == (1, 1280, 3, 2) and logits.shape == (2, 1000)
    # Blocks with stride 1 and unchanged width keep the input (identity skip).
    skips = [b.residual for b in model._blocks]
    assert skips.count(True) == blocks - len(VARIANTS[variant])


def test_unknown_variant_and_style_are_refused() -> None:
    with pytest.raises(ValueError, match="variant"):
        EfficientNetLite("efficientnet_lite9")
    with pytest.raises(ConfigError, match="style"):
        CNNConfig(backbone="efficientnet_lite2", style=True)


def test_config_takes_each_backbones_native_input_and_mean_colour() -> None:
    assert CNNConfig().size == 224
    assert CNNConfig(backbone="efficientnet_lite2").size == 260
    assert CNNConfig(backbone="efficientnet_lite2", input_size=224).size == 224
    # Options on top of the default config take the new backbone's own defaults.
    assert CNNExtractor(backbone="efficientnet_lite2").config_dict()["input_size"] == 260
    assert CNNExtractor(backbone="efficientnet_lite0").config_dict()["input_size"] == 224
    assert pad_colour("efficientnet_lite2") == (128, 128, 128)
    assert pad_colour("mobilenet_v2") == (124, 116, 104)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_random_lite_extractor_embeds_posters(variant: str) -> None:
    ext = CNNExtractor(backbone=variant, pretrained=False, input_size=64)
    ext.load("cpu")
    out = ext.extract([make_poster(0), make_poster(1, size=(300, 200))])
    assert out.shape == (2, 1280) and np.isfinite(out).all()
    # Random-weight embeddings are tiny (~1e-10): compare directions, not values.
    cos = float(out[0] @ out[1] / (np.linalg.norm(out[0]) * np.linalg.norm(out[1])))
    assert cos < 0.9999


@pytest.mark.weights
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_the_files_load_strictly_and_name_the_right_things(variant: str) -> None:
    require_weights(variant)
    from skimage import data

    ext = CNNExtractor(backbone=variant)
    ext.load("cpu")  # load_state_dict is strict: every key and shape of the file matches
    top = ext.imagenet_top([data.coffee(), data.chelsea()], k=3)
    assert top[0][0][0] == "espresso"
    assert any("cat" in label for label, _ in top[1])


def test_also_joins_the_backbones_embeddings_in_order() -> None:
    posters = [make_poster(0), make_poster(1, size=(300, 200))]

    def run(**options: object) -> np.ndarray:
        ext = CNNExtractor(pretrained=False, **options)
        ext.load("cpu")
        return ext.extract(posters)

    joined_ext = CNNExtractor(pretrained=False, also=("efficientnet_lite0",))
    joined = run(also=("efficientnet_lite0",))
    assert joined.shape == (2, 2560) and joined_ext.dim == 2560 and joined_ext.main_dim == 1280
    assert joined_ext.feature_names()[-1] == "cnn.2559"
    np.testing.assert_array_equal(joined[:, :1280], run(also=()))
    np.testing.assert_array_equal(joined[:, 1280:], run(backbone="efficientnet_lite0"))


def test_also_round_trips_through_json_and_is_left_out_when_empty() -> None:
    import json

    from postergenre.features import extractor_from_record

    ext = CNNExtractor(also=("efficientnet_lite2",))
    recorded = json.loads(json.dumps(ext.config_dict()))
    assert recorded["also"] == ["efficientnet_lite2"]
    again = extractor_from_record("cnn", recorded)  # as a model bundle rebuilds it
    assert again.config_dict() == recorded and again.config.extras == ("efficientnet_lite2",)
    # MobileNetV2 is joined by Lite2 by default; other backbones stand alone.
    assert CNNExtractor().config.extras == ("efficientnet_lite2",)
    assert CNNExtractor(backbone="resnet18").config.extras == ()
    # A record made before the option existed (no key) means one backbone, not today's
    # default; and a one-backbone config records no key, so those records keep matching.
    alone = CNNExtractor(also=())
    old = extractor_from_record("cnn", alone.config_dict())
    assert "also" not in alone.config_dict() and old.config.extras == () and old.dim == 1280
    with pytest.raises(ConfigError, match="also"):
        CNNConfig(also=("vgg16",))


def test_gradcam_over_joined_backbones_is_a_normalised_map() -> None:
    ext = CNNExtractor(pretrained=False, input_size=64, also=("efficientnet_lite0",))
    ext.load("cpu")
    poster = make_poster(3)
    direction = np.random.default_rng(0).normal(size=ext.dim)
    heat = ext.gradcam(poster, direction)
    assert heat.shape == poster.shape[:2] and heat.max() == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="direction"):
        ext.gradcam(poster, direction[:1280])
