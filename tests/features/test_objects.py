"""The objects extractor: feature layout, box geometry, and (with real weights) detections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import require_weights

from postergenre.errors import ConfigError
from postergenre.features import get_extractor
from postergenre.features.objects import (
    COCO_CLASSES,
    STRIDE,
    ObjectsExtractor,
    _letterbox_geometry,
    _union_area,
)

N_FEATURES = 80 * 2 + 2


def _weights_path() -> Path | None:
    from postergenre import weights

    st = weights.status("yolo11n-seg")
    return st.path if st.state == "ok" else None


@pytest.fixture(scope="module")
def loaded() -> ObjectsExtractor:
    require_weights("yolo11n-seg")
    return ObjectsExtractor().load("cpu")


def _sample(name: str) -> np.ndarray:
    data = pytest.importorskip("skimage.data", reason="scikit-image gives the test photos")
    image: np.ndarray = getattr(data, name)()
    return image


# -- without weights ------------------------------------------------------------------
def test_feature_names_cover_80_classes_then_totals() -> None:
    names = ObjectsExtractor().feature_names()
    assert len(names) == N_FEATURES
    assert len(set(names)) == N_FEATURES
    assert names[:2] == ["objects.person.count", "objects.person.area"]
    assert "objects.cell_phone.count" in names and "objects.teddy_bear.area" in names
    assert names[-2:] == ["objects.total", "objects.largest_area"]
    assert all(" " not in n for n in names)
    assert len(COCO_CLASSES) == 80 and len(set(COCO_CLASSES)) == 80


def test_feature_names_need_neither_torch_nor_ultralytics() -> None:
    code = textwrap.dedent(
        """
        import sys
        from postergenre.features import get_extractor
        names = get_extractor("objects", imgsz=416).feature_names()
        heavy = [m for m in ("torch", "torchvision", "ultralytics", "cv2") if m in sys.modules]
        print(len(names), heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [str(N_FEATURES), "[]"]


@pytest.mark.parametrize(
    "overrides",
    [{"imgsz": 300}, {"imgsz": 0}, {"conf": 1.5}, {"iou": 0.0}, {"max_det": 0}, {"size": 320}],
)
def test_bad_config_is_a_config_error(overrides: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ObjectsExtractor(**overrides)


@pytest.mark.parametrize(
    ("height", "width", "imgsz"),
    [(236, 160, 320), (160, 236, 256), (512, 512, 416), (1, 1000, 320), (37, 5, 320)],
)
def test_letterbox_fits_image_inside_a_stride_multiple_canvas(
    height: int, width: int, imgsz: int
) -> None:
    g = _letterbox_geometry(height, width, imgsz)
    canvas_h, canvas_w = g.canvas
    assert canvas_h % STRIDE == 0 and canvas_w % STRIDE == 0
    assert max(canvas_h, canvas_w) == imgsz  # the long side is the target, unpadded
    new_h, new_w = g.resized
    assert 0 <= g.top and g.top + new_h <= canvas_h and 0 <= g.left and g.left + new_w <= canvas_w
    # Centred: the two margins differ by at most a pixel.
    assert abs((canvas_w - new_w - g.left) - g.left) <= 1
    assert abs(g.scale_x * width - new_w) < 1e-9 and abs(g.scale_y * height - new_h) < 1e-9


def test_poster_canvas_is_192_by_256_at_default_size() -> None:
    g = _letterbox_geometry(236, 160, ObjectsExtractor().config.imgsz)
    assert g.canvas == (256, 192) and g.resized == (256, 174)


def test_union_area_counts_overlap_once() -> None:
    overlapping = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], dtype=float)
    assert _union_area(overlapping) == pytest.approx(7.0)
    inside = np.array([[0, 0, 10, 10], [2, 2, 4, 4]], dtype=float)
    assert _union_area(inside) == pytest.approx(100.0)
    apart = np.array([[0, 0, 1, 1], [5, 5, 7, 8]], dtype=float)
    assert _union_area(apart) == pytest.approx(7.0)
    assert _union_area(np.zeros((0, 4))) == 0.0


def test_features_are_built_from_the_detections(monkeypatch: pytest.MonkeyPatch) -> None:
    ex = ObjectsExtractor()
    ex.device = "cpu"  # no model: detections are faked below
    person, dog = COCO_CLASSES.index("person"), COCO_CLASSES.index("dog")
    fake = [
        (
            np.array([[0, 0, 50, 100], [25, 0, 75, 100], [0, 0, 10, 10]], dtype=float),
            np.array([0.9, 0.8, 0.4]),
            np.array([person, person, dog]),
        ),
        (np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64)),
    ]
    monkeypatch.setattr(ex, "_detect_arrays", lambda images: fake)
    images = [np.zeros((100, 100, 3), np.uint8), np.zeros((50, 80, 3), np.uint8)]
    out = ex.extract(images)
    row = dict(zip(ex.feature_names(), out[0], strict=True))
    assert out.shape == (2, N_FEATURES) and out.dtype == np.float32
    assert row["objects.person.count"] == 2
    assert row["objects.person.area"] == pytest.approx(0.75)  # union, not 0.5 + 0.5
    assert row["objects.dog.count"] == 1
    assert row["objects.dog.area"] == pytest.approx(0.01)
    assert row["objects.total"] == 3
    assert row["objects.largest_area"] == pytest.approx(0.5)
    assert row["objects.cat.count"] == 0
    assert not out[1].any()


def test_detect_rejects_a_non_rgb_array() -> None:
    ex = ObjectsExtractor()
    ex.device = "cpu"  # checked before the (absent) model is used
    with pytest.raises(ConfigError, match="expected an \\(H, W, 3\\) uint8"):
        ex.detect([np.zeros((10, 10), np.uint8)])


# -- with the real weights -----------------------------------------------------------
@pytest.mark.weights
def test_astronaut_has_a_person(loaded: ObjectsExtractor) -> None:
    row = dict(zip(loaded.feature_names(), loaded.extract([_sample("astronaut")])[0], strict=True))
    assert row["objects.person.count"] >= 1
    assert 0.2 < row["objects.person.area"] <= 1.0


@pytest.mark.weights
def test_chelsea_has_a_cat(loaded: ObjectsExtractor) -> None:
    row = dict(zip(loaded.feature_names(), loaded.extract([_sample("chelsea")])[0], strict=True))
    assert row["objects.cat.count"] >= 1
    assert row["objects.person.count"] == 0


@pytest.mark.weights
def test_flat_grey_image_has_nothing(loaded: ObjectsExtractor) -> None:
    out = loaded.extract([np.full((236, 160, 3), 128, np.uint8)])
    names = loaded.feature_names()
    assert out[0, names.index("objects.total")] == 0
    assert not out.any()


@pytest.mark.weights
def test_detect_gives_labelled_boxes_inside_each_image(loaded: ObjectsExtractor) -> None:
    images = [_sample("astronaut"), _sample("chelsea"), np.full((40, 30, 3), 128, np.uint8)]
    found = loaded.detect(images)
    assert len(found) == 3 and found[2] == []
    for image, dets in zip(images, found, strict=True):
        h, w = image.shape[:2]
        for d in dets:
            assert d.label in COCO_CLASSES and loaded.config.conf < d.score <= 1.0
            x0, y0, x1, y1 = d.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert "person" in [d.label for d in found[0]]
    totals = loaded.extract(images)[:, loaded.feature_names().index("objects.total")]
    assert totals.tolist() == [len(d) for d in found]


@pytest.mark.weights
def test_an_images_features_do_not_depend_on_its_batch(loaded: ObjectsExtractor) -> None:
    astronaut, chelsea, coffee = _sample("astronaut"), _sample("chelsea"), _sample("coffee")
    alone = loaded.extract([chelsea])
    mixed = loaded.extract([astronaut, chelsea, coffee, chelsea[:, ::-1].copy()])
    np.testing.assert_allclose(mixed[1], alone[0], atol=1e-4)


@pytest.mark.weights
def test_boxes_match_ultralytics_predict(loaded: ObjectsExtractor) -> None:
    from ultralytics import YOLO

    path = _weights_path()
    cfg = loaded.config
    reference = YOLO(str(path), task="segment")
    images = [_sample("astronaut"), _sample("chelsea"), _sample("coffee"), _sample("rocket")]
    ours = loaded.detect(images)
    assert sum(map(len, ours)) >= 4  # the comparison must compare something
    for image, dets in zip(images, ours, strict=True):
        result = reference.predict(
            np.ascontiguousarray(image[..., ::-1]),  # Ultralytics takes BGR arrays
            imgsz=cfg.imgsz, conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det,
            device="cpu", verbose=False,
        )[0]  # fmt: skip
        theirs = sorted(
            (
                (result.names[int(c)], float(s), tuple(float(v) for v in b))
                for b, s, c in zip(
                    result.boxes.xyxy, result.boxes.conf, result.boxes.cls, strict=True
                )
            ),
            key=lambda t: -t[1],
        )
        mine = sorted(((d.label, d.score, d.box) for d in dets), key=lambda t: -t[1])
        assert [t[0] for t in mine] == [t[0] for t in theirs]
        for (_, s1, b1), (_, s2, b2) in zip(mine, theirs, strict=True):
            assert s1 == pytest.approx(s2, abs=2e-3)
            np.testing.assert_allclose(b1, b2, atol=1.5)


@pytest.mark.weights
def test_extraction_never_touches_the_network_nor_stdout(tmp_path: Path) -> None:
    # A fresh interpreter, so that Ultralytics' import-time behaviour is covered too.
    require_weights("yolo11n-seg")
    path = _weights_path()
    assert path is not None
    _sample("astronaut")
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "XDG_"))}
    env.update(
        HOME=str(home),
        POSTERGENRE_HOME=str(tmp_path / "pg"),
        POSTERGENRE_WEIGHTS_DIR=str(path.parent),
        POSTERGENRE_OFFLINE="1",
    )
    code = textwrap.dedent(
        """
        import json, socket
        attempts = []
        def refuse(name):
            def blocked(*args, **kwargs):
                attempts.append(name)
                raise OSError(f"network blocked in test ({name})")
            return blocked
        socket.socket.connect = refuse("connect")
        socket.socket.connect_ex = refuse("connect_ex")
        socket.create_connection = refuse("create_connection")
        socket.getaddrinfo = refuse("getaddrinfo")
        import skimage.data
        from postergenre.features import get_extractor
        ex = get_extractor("objects").load("cpu")
        row = dict(zip(ex.feature_names(), ex.extract([skimage.data.astronaut()])[0]))
        print(json.dumps({"attempts": attempts, "person": float(row["objects.person.count"])}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 1, f"unexpected stdout: {done.stdout!r}"  # no banners on stdout
    result = json.loads(lines[0])
    assert result["attempts"] == []
    assert result["person"] >= 1
    # Ultralytics' settings land in postergenre's home, not in the user's ~/.config.
    assert (tmp_path / "pg" / "Ultralytics" / "settings.json").is_file()
    assert not (home / ".config" / "Ultralytics").exists()


def _ultralytics_detector(path: Path, fuse: bool) -> Any:
    """Ultralytics' own DetectionModel with the checkpoint's detector weights (the reference)."""
    import copy

    import torch

    from postergenre.features.objects import _configure_ultralytics

    _configure_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    source = checkpoint.get("ema") or checkpoint["model"]
    source = source.float()
    cfg = copy.deepcopy(source.yaml)
    cfg["head"][-1] = [*cfg["head"][-1][:2], "Detect", ["nc"]]
    model = DetectionModel(cfg, ch=3, nc=len(source.names), verbose=False)
    have = source.state_dict()
    model.load_state_dict({k: have[k] for k in model.state_dict()})
    model.eval()
    return model.fuse(verbose=False) if fuse else model


@pytest.mark.weights
def test_our_network_computes_ultralytics_detection_model(loaded: ObjectsExtractor) -> None:
    import torch

    from postergenre.features import yolo
    from postergenre.features.objects import _read_converted, converted_path

    path = _weights_path()
    assert path is not None and converted_path().is_file()  # the fixture's load wrote it
    unfused, _ = yolo.build_detector(*_read_converted(converted_path()), fuse=False)
    g = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 256, 192), (1, 3, 320, 416)]:
        x = torch.rand(*shape, generator=g)
        with torch.inference_mode():
            expected = _ultralytics_detector(path, fuse=False)(x)[0]
            torch.testing.assert_close(unfused(x), expected, rtol=0, atol=1e-4)
            expected = _ultralytics_detector(path, fuse=True)(x)[0]
            torch.testing.assert_close(loaded.model_(x), expected, rtol=0, atol=1e-4)


def _pg_env(tmp_path: Path) -> dict[str, str]:
    path = _weights_path()
    assert path is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "POSTERGENRE_"))}
    env.update(
        POSTERGENRE_HOME=str(tmp_path / "pg"),
        POSTERGENRE_WEIGHTS_DIR=str(path.parent),
        POSTERGENRE_OFFLINE="1",
    )
    return env


def _use_pg_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This process uses :func:`_pg_env`'s fresh home (and the fetched weights, offline)."""
    for key, value in _pg_env(tmp_path).items():
        if key.startswith("POSTERGENRE_"):
            monkeypatch.setenv(key, value)


@pytest.mark.weights
def test_after_the_first_load_no_extractor_imports_torchvision_or_ultralytics(
    tmp_path: Path,
) -> None:
    require_weights("yolo11n-seg", "mobilenet_v2", "retinaface_mnet025", "emotion_minixception")
    env = _pg_env(tmp_path)
    code = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        from postergenre.features import get_extractor
        poster = np.full((236, 160, 3), 128, np.uint8)
        for name in ("cnn", "objects", "faces"):
            get_extractor(name).load("cpu").extract([poster])
        print(json.dumps(sorted(m for m in ("torchvision", "ultralytics") if m in sys.modules)))
        """
    )

    def run(*flags: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, *flags, "-c", code], capture_output=True, text=True, env=env,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    cached = tmp_path / "pg" / "weights" / "yolo11n-seg.55ed65c5.detect.safetensors"
    first = run()
    # The first load unpickles Ultralytics' checkpoint, and caches what it needs from it.
    assert "ultralytics" in json.loads(first.stdout.splitlines()[-1])
    assert cached.is_file()
    later = run("-X", "importtime")
    assert json.loads(later.stdout.splitlines()[-1]) == []
    imported = [line for line in later.stderr.splitlines() if line.startswith("import time:")]
    assert len(imported) > 100  # -X importtime did report
    assert not [line for line in imported if "torchvision" in line or "ultralytics" in line]


@pytest.mark.weights
def test_an_unwritable_cache_still_loads_the_detector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loaded: ObjectsExtractor
) -> None:
    from postergenre.features import objects

    _use_pg_env(tmp_path, monkeypatch)

    def refuse(*args: object) -> None:
        raise PermissionError("read-only cache (test)")

    monkeypatch.setattr(objects, "_write_converted", refuse)
    with pytest.warns(UserWarning, match="could not cache the converted detector"):
        ex = ObjectsExtractor().load("cpu")
    assert not objects.converted_path().exists()
    images = [_sample("astronaut"), _sample("chelsea")]
    np.testing.assert_array_equal(ex.extract(images), loaded.extract(images))


@pytest.mark.weights
def test_a_damaged_cache_is_converted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loaded: ObjectsExtractor
) -> None:
    from postergenre import weights
    from postergenre.features import objects

    _use_pg_env(tmp_path, monkeypatch)
    cached = objects.converted_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a safetensors file")
    with pytest.warns(UserWarning, match="is unreadable .*; converting the checkpoint again"):
        ex = ObjectsExtractor().load("cpu")
    _, meta = objects._read_converted(cached)  # rewritten whole
    assert meta["source_sha256"] == weights.spec("yolo11n-seg").sha256
    image = [_sample("astronaut")]
    np.testing.assert_array_equal(ex.extract(image), loaded.extract(image))


@pytest.mark.weights
@pytest.mark.gpu
def test_cuda_gives_the_cpu_features(loaded: ObjectsExtractor) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    images = [_sample("astronaut"), _sample("chelsea"), _sample("coffee")]
    on_gpu = get_extractor("objects").load("cuda")
    assert next(on_gpu.model_.parameters()).is_cuda
    np.testing.assert_allclose(on_gpu.extract(images), loaded.extract(images), atol=1e-2)
