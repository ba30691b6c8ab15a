"""cnn: output widths (random weights), fit geometry, TTA, Grad-CAM; real-weight behaviour."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import make_poster, require_weights

from postergenre.errors import ConfigError, WeightsError
from postergenre.features import get_extractor
from postergenre.features.cnn import BACKBONES, STYLE_TAPS, CNNExtractor, fit_to_input


def random_cnn(**overrides: object) -> CNNExtractor:
    # Small input keeps random-weight tests fast; the widths do not depend on it.
    options: dict[str, object] = {"pretrained": False, "input_size": 64, **overrides}
    ext = CNNExtractor(**options)
    ext.load("cpu")
    return ext


def skimage_poster(name: str) -> np.ndarray:
    """A bundled scikit-image photo, centre-cropped to a 2:3 poster shape."""
    from skimage import data

    img = getattr(data, name)()
    h, w = img.shape[:2]
    cw = min(w, h * 2 // 3)
    x0 = (w - cw) // 2
    return np.ascontiguousarray(img[:, x0 : x0 + cw])


def unit(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length: random-weight embeddings can be tiny (~1e-9) in absolute."""
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_random_weights_give_the_backbone_width(backbone: str) -> None:
    ext = random_cnn(backbone=backbone, style=False)
    out = ext.extract([make_poster(0), make_poster(1, size=(300, 200))])
    # The default backbone is joined by its default extra backbone (CNNConfig.also).
    assert ext.dim == BACKBONES[backbone] + sum(BACKBONES[b] for b in ext.config.extras)
    assert out.shape == (2, ext.dim)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert ext.feature_names()[0] == "cnn.0000"
    assert ext.feature_names()[-1] == f"cnn.{ext.dim - 1:04d}"
    # Different posters must not collapse onto one embedding.
    assert cosine(out[0], out[1]) < 0.9999


@pytest.mark.parametrize("backbone", sorted(STYLE_TAPS))
def test_style_statistics_follow_the_embedding(backbone: str) -> None:
    posters = [make_poster(0), make_poster(1, size=(300, 200))]
    plain = random_cnn(backbone=backbone).extract(posters)  # style=False is the default
    ext = random_cnn(backbone=backbone, style=True)
    out = ext.extract(posters)
    names = ext.feature_names()
    taps = STYLE_TAPS[backbone]
    assert out.shape == (2, ext.dim + 2 * sum(c for _, c in taps)) == (2, len(names))
    assert len(set(names)) == len(names) and all(n.startswith("cnn.") for n in names)
    # The embedding part is the plain extractor's output, unchanged.
    np.testing.assert_allclose(out[:, : ext.dim], plain, rtol=1e-5, atol=1e-7)
    std_cols = [i for i, n in enumerate(names) if ".std." in n]
    assert len(std_cols) == sum(c for _, c in taps) and (out[:, std_cols] >= 0).all()


def test_style_statistics_see_texture_the_pooled_embedding_averages_away() -> None:
    # Stripes and a flat field of the same mean colour: the spread of early feature maps
    # must tell them apart. (Stripes 12 px wide stay a few pixels wide at input 96.)
    flat = np.full((240, 160, 3), 128, dtype=np.uint8)
    stripes = flat.copy()
    for x0 in range(0, 160, 24):
        stripes[:, x0 : x0 + 12] = 0
        stripes[:, x0 + 12 : x0 + 24] = 255
    ext = random_cnn(input_size=96, style=True)
    out = ext.extract([flat, stripes])
    names = ext.feature_names()
    first_std = [i for i, n in enumerate(names) if n.startswith("cnn.style06.std.")]
    assert out[1, first_std].mean() > 2 * out[0, first_std].mean()


def test_random_init_is_seeded_and_leaves_the_global_rng_alone() -> None:
    import torch

    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = random_cnn(seed=7).extract([make_poster(2)])
    assert torch.equal(torch.rand(3), expected_next)
    b = random_cnn(seed=7).extract([make_poster(2)])
    c = random_cnn(seed=8).extract([make_poster(2)])
    np.testing.assert_array_equal(a, b)
    assert cosine(a[0], c[0]) < 0.9999


def test_batching_does_not_change_the_embedding() -> None:
    posters = [make_poster(i) for i in range(5)]
    whole = random_cnn(batch_size=8).extract(posters)
    pieces = random_cnn(batch_size=2).extract(posters)
    np.testing.assert_allclose(unit(whole), unit(pieces), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fit", ["squash", "crop", "pad", "tall"])
def test_hflip_tta_makes_the_embedding_mirror_invariant(fit: str) -> None:
    poster = make_poster(3)  # at input 64, pad leaves an odd margin: 21 px
    mirrored = np.ascontiguousarray(poster[:, ::-1])
    plain = random_cnn(fit=fit, hflip=False).extract([poster, mirrored])
    assert cosine(plain[0], plain[1]) < 0.9999
    tta = unit(random_cnn(fit=fit, hflip=True).extract([poster, mirrored]))
    np.testing.assert_allclose(tta[0], tta[1], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "shape"),
    [("squash", (236, 160)), ("crop", (236, 160)), ("pad", (236, 160)), ("pad", (1, 16)),
     ("crop", (16, 1)), ("squash", (3000, 2000)), ("tall", (1, 16)), ("tall", (16, 1)),
     ("tall", (3000, 2000))],
)  # fmt: skip
def test_fit_to_input_gives_the_input_size(mode: str, shape: tuple[int, int]) -> None:
    image = np.full((*shape, 3), 200, dtype=np.uint8)
    out, _ = fit_to_input(image, mode, 224)
    expected = (336, 224, 3) if mode == "tall" else (224, 224, 3)
    assert out.shape == expected and out.dtype == np.uint8


def test_pad_keeps_the_whole_poster_and_fills_with_the_mean_colour() -> None:
    image = np.full((300, 200, 3), 255, dtype=np.uint8)
    out, placement = fit_to_input(image, "pad", 224)
    assert (placement.rh, placement.rw) == (224, 149)
    assert (out[:, 112] == 255).all()  # the poster spans the full height
    assert tuple(out[0, 0]) == (124, 116, 104)  # ImageNet mean: zero after normalisation


def test_crop_keeps_the_middle_and_loses_top_and_bottom() -> None:
    image = np.zeros((300, 200, 3), dtype=np.uint8)
    image[:30] = 255  # a band on top that crop must cut away
    out, placement = fit_to_input(image, "crop", 224)
    assert (placement.rh, placement.rw) == (336, 224)
    assert out.max() == 0


def test_tall_is_a_portrait_input_that_the_poster_fills() -> None:
    image = np.full((300, 200, 3), 255, dtype=np.uint8)  # 2:3, like most posters
    out, placement = fit_to_input(image, "tall", 224)
    assert out.shape == (336, 224, 3)
    assert (placement.rh, placement.rw, placement.oy, placement.ox) == (336, 224, 0, 0)
    assert (out == 255).all()  # no padding at all: pad would leave a third of the square
    wide = np.full((100, 300, 3), 255, dtype=np.uint8)  # a landscape still: padded above/below
    out, placement = fit_to_input(wide, "tall", 224)
    assert out.shape == (336, 224, 3) and (placement.rh, placement.rw) == (75, 224)
    assert tuple(out[0, 0]) == (124, 116, 104) and (out[168] == 255).all()


def test_tall_embeds_with_the_same_width_and_maps_gradcam_over_the_poster() -> None:
    pad, tall = random_cnn(fit="pad"), random_cnn(fit="tall")
    poster = make_poster(6, size=(240, 160))
    a, b = pad.extract([poster]), tall.extract([poster])
    assert a.shape == b.shape == (1, pad.dim)
    assert cosine(unit(a)[0], unit(b)[0]) < 0.9999  # another view of the poster, not the same
    heat = tall.gradcam(poster, np.ones(tall.dim, dtype=np.float32))
    assert heat.shape == (240, 160) and heat.max() == pytest.approx(1.0)


def test_gradcam_is_a_normalised_map_over_the_whole_poster() -> None:
    ext = random_cnn()
    poster = make_poster(4, size=(250, 170))
    direction = ext.extract([poster])[0]  # "more of what this poster already has"
    heat = ext.gradcam(poster, direction)
    assert heat.shape == (250, 170) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)


@pytest.mark.parametrize("fit", ["pad", "tall"])
def test_gradcam_with_hflip_covers_both_views(fit: str) -> None:
    # The embedding averages the poster and its mirror, so the map of the mirrored poster
    # must be the mirror of the poster's map (without hflip it is not).
    poster = make_poster(7, size=(240, 160))  # 2:3, so no placement margin to round
    mirrored = np.ascontiguousarray(poster[:, ::-1])
    ext = random_cnn(fit=fit, hflip=True)
    direction = ext.extract([poster])[0]
    heat, heat_m = ext.gradcam(poster, direction), ext.gradcam(mirrored, direction)
    np.testing.assert_allclose(heat_m, heat[:, ::-1], atol=1e-3)
    plain = random_cnn(fit=fit, hflip=False)
    one, one_m = plain.gradcam(poster, direction), plain.gradcam(mirrored, direction)
    assert np.abs(one_m - one[:, ::-1]).max() > 0.05


def test_gradcam_in_crop_mode_is_zero_where_the_network_saw_nothing() -> None:
    ext = random_cnn(fit="crop")
    poster = make_poster(5, size=(300, 150))  # crop keeps the middle 150 rows
    heat = ext.gradcam(poster, np.ones(ext.dim, dtype=np.float32))
    assert heat.max() > 0
    assert np.all(heat[:60] == 0) and np.all(heat[-60:] == 0)


def test_gradcam_rejects_a_direction_of_the_wrong_width() -> None:
    ext = random_cnn()
    with pytest.raises(ConfigError, match="direction"):
        ext.gradcam(make_poster(0), np.ones(512, dtype=np.float32))


def test_unknown_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="backbone"):
        get_extractor("cnn", backbone="vgg16")
    with pytest.raises(ConfigError, match="fit"):
        get_extractor("cnn", fit="stretch")


def test_missing_weights_raise_a_weights_error_offline(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTERGENRE_HOME", str(tmp_path))
    monkeypatch.delenv("POSTERGENRE_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("POSTERGENRE_OFFLINE", "1")
    with pytest.raises(WeightsError, match="resnet18"):
        CNNExtractor(backbone="resnet18").load("cpu")


# -- real weights ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mobilenet() -> CNNExtractor:
    require_weights("mobilenet_v2")
    ext = CNNExtractor(also=())  # MobileNetV2 alone
    ext.load("cpu")
    return ext


@pytest.mark.weights
def test_resized_copy_is_closer_than_another_poster(mobilenet: CNNExtractor) -> None:
    import cv2

    names = ("astronaut", "coffee", "chelsea", "rocket")
    posters = [skimage_poster(n) for n in names]
    resized = [cv2.resize(p, (int(p.shape[1] * 0.8), int(p.shape[0] * 0.8))) for p in posters]
    emb = mobilenet.extract(posters)
    emb_resized = mobilenet.extract(resized)
    for i in range(len(names)):
        same = cosine(emb[i], emb_resized[i])
        others = [cosine(emb[i], emb[j]) for j in range(len(names)) if j != i]
        assert same > 0.9 and same > max(others), names[i]


@pytest.mark.weights
def test_imagenet_top_names_the_right_things(mobilenet: CNNExtractor) -> None:
    top = mobilenet.imagenet_top([skimage_poster("coffee"), skimage_poster("chelsea")], k=3)
    assert len(top) == 2 and all(len(t) == 3 for t in top)
    assert top[0][0][0] == "espresso"
    assert any("cat" in label for label, _ in top[1])
    probs = [p for _, p in top[1]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6


@pytest.mark.weights
def test_gradcam_of_a_class_direction_points_at_the_object(mobilenet: CNNExtractor) -> None:
    import cv2
    from skimage import data

    # A cat photo pasted in the lower right of a plain grey poster: the heat for the
    # "Egyptian cat" direction must peak on the cat, not on the empty poster.
    poster = np.full((360, 240, 3), 128, dtype=np.uint8)
    cat = cv2.resize(data.chelsea(), (120, 80))
    poster[260:340, 100:220] = cat
    weights = mobilenet._model.classifier[1].weight.detach().cpu().numpy()
    labels = [label for label, _ in mobilenet.imagenet_top([data.chelsea()], k=1)[0]]
    from torchvision.models import MobileNet_V2_Weights

    index = MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"].index(labels[0])
    heat = mobilenet.gradcam(poster, weights[index])
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert 240 <= y < 360 and 80 <= x < 240
    assert heat[:150].mean() < heat[260:340, 100:220].mean()


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_fusing_batchnorm_keeps_the_function(backbone: str) -> None:
    import torch

    from postergenre.features.cnn import _builder, fuse_conv_bn

    torch.manual_seed(0)
    model = _builder(backbone)(weights=None).eval()
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for m in model.modules():  # non-trivial statistics, or the fold would be a no-op
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        before = model(x)
        fuse_conv_bn(model)
        after = model(x)
    assert n_bn > 0
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    scale = before.abs().max()
    torch.testing.assert_close(after / scale, before / scale, rtol=1e-4, atol=1e-4)


# -- our MobileNetV2 against torchvision's ----------------------------------------------------


def _torchvision_mobilenet_v2() -> Any:
    models = pytest.importorskip("torchvision.models", reason="torchvision is the reference")
    return models.mobilenet_v2(weights=None)


def test_our_mobilenet_v2_has_torchvisions_keys_shapes_and_random_init() -> None:
    import torch

    from postergenre.features.mobilenet import MobileNetV2

    torch.manual_seed(5)
    theirs = _torchvision_mobilenet_v2().state_dict()
    torch.manual_seed(5)
    ours = MobileNetV2().state_dict()
    assert list(ours) == list(theirs)
    for key, value in ours.items():
        # Same modules built in the same order: even the seeded random init is identical,
        # so random-weight features (tests) do not move either.
        assert torch.equal(value, theirs[key]), key


def test_our_mobilenet_v2_computes_torchvisions_function() -> None:
    import torch

    from postergenre.features.mobilenet import MobileNetV2

    torch.manual_seed(0)
    reference = _torchvision_mobilenet_v2().eval()
    for m in reference.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    ours = MobileNetV2().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 128)
    with torch.inference_mode():
        torch.testing.assert_close(ours.features(x), reference.features(x), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)


@pytest.mark.weights
def test_pretrained_mobilenet_v2_matches_torchvision(mobilenet: CNNExtractor) -> None:
    import torch

    from postergenre import weights
    from postergenre.features.mobilenet import MobileNetV2

    state = torch.load(weights.resolve("mobilenet_v2"), map_location="cpu", weights_only=True)
    ours, reference = MobileNetV2().eval(), _torchvision_mobilenet_v2().eval()
    ours.load_state_dict(state, strict=True)
    reference.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=1e-5)
        # The extractor's network is BN-folded and channels-last: the same up to rounding.
        folded = mobilenet._embed(x.contiguous(memory_format=torch.channels_last))
        expected = reference.features(x).mean(dim=(2, 3))
        torch.testing.assert_close(folded, expected, rtol=0, atol=1e-4)


def test_mobilenet_v2_loads_without_torchvision() -> None:
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        from postergenre.features import get_extractor
        ext = get_extractor("cnn", pretrained=False, input_size=64).load("cpu")
        ext.extract([__import__("numpy").zeros((90, 60, 3), "uint8")])
        print([m for m in ("torchvision", "ultralytics") if m in sys.modules])
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["[]"]
