"""The HTTP API through FastAPI's test client, on a small real model (no pretrained files).

Every bad input must come back as a 4xx JSON error with the CLI's kind and hint, and the
server must keep serving after it; a full queue answers 503 with Retry-After, then recovers.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode, make_poster, require_weights

pytest.importorskip("fastapi", reason="needs the serve extra: pip install '.[serve]'")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from postergenre.errors import PosterError  # noqa: E402
from postergenre.images import decode_poster, load_poster  # noqa: E402
from postergenre.serve.app import create_app  # noqa: E402
from postergenre.serve.config import ServeConfig  # noqa: E402

STATIC = Path(__file__).resolve().parents[2] / "src" / "postergenre" / "serve" / "static"


def jpeg(seed: int, size: tuple[int, int] = (236, 160)) -> bytes:
    return encode(make_poster(seed, size=size), "JPEG", quality=90)


def noise_png(side: int, seed: int = 0) -> bytes:
    """A PNG that does not compress: about 3 * side**2 bytes."""
    rng = np.random.default_rng(seed)
    return encode(rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "PNG")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (a decompression bomb's header) with a tiny body."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 10))
        + chunk(b"IEND", b"")
    )


def upload(*items: tuple[str, bytes], field: str = "files") -> list[tuple[str, Any]]:
    return [(field, (name, data, "application/octet-stream")) for name, data in items]


def post(client: TestClient, *items: tuple[str, bytes], **params: Any) -> Any:
    return client.post("/api/analyze", params=params, files=upload(*items))


@pytest.fixture
def client(tiny_analyzer: Any) -> Iterator[TestClient]:
    with TestClient(create_app(ServeConfig(), tiny_analyzer)) as c:
        yield c


class Gated:
    """The real analyzer, but each analysis waits until ``gate`` opens (to fill the queue)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def analyze_many(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.release()
        if not self.gate.wait(30):
            raise RuntimeError("gate never opened")
        return self.inner.analyze_many(*args, **kwargs)


def close_enough(a: Any, b: Any, where: str = "") -> None:
    """Same JSON structure and strings; floats equal up to thread-count rounding."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for k in a:
            close_enough(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close_enough(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(b, bool):
        assert math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# -- the page and the metadata ------------------------------------------------------------------


def test_page_and_its_assets_are_served_and_need_no_network(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="files"' in page.text and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, f"{path.name} loads from the web"
        # Text from the server (file names, messages) only ever goes through textContent.
        assert not re.search(r"innerHTML\s*=|outerHTML|insertAdjacentHTML|document\.write", text)


def test_health_model_and_openapi(client: TestClient, tiny_analyzer: Any) -> None:
    health = client.get("/api/health").json()
    assert health["status"] == "ready"
    assert health["queue"] == {"capacity": 8, "in_use": 0}
    info = client.get("/api/model").json()
    assert info["genres"] == list(tiny_analyzer.genres)
    assert info["thresholds"] == pytest.approx(
        dict(zip(tiny_analyzer.genres, tiny_analyzer.thresholds.tolist(), strict=True))
    )
    assert [(e["name"], e["version"]) for e in info["extractors"]] == [
        (e["extractor"], e["version"]) for e in tiny_analyzer.bundle.extractors
    ]
    assert info["metrics"] == tiny_analyzer.bundle.card.get("metrics", {})
    assert info["limits"]["max_files"] == ServeConfig().max_files
    spec = client.get("/openapi.json").json()
    assert {"/api/analyze", "/api/card", "/api/health", "/api/model"} <= set(spec["paths"])
    body = spec["paths"]["/api/analyze"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert client.get("/docs").status_code == 200


# -- good posters ------------------------------------------------------------------------------


def test_analyze_answers_what_the_cli_prints(
    client: TestClient, tiny_model: Path, tmp_path: Path
) -> None:
    data = jpeg(7)
    poster = tmp_path / "night.jpg"
    poster.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-m", "postergenre", "analyze", str(poster), "--json", "--explain",
         "--top-k", "2", "--model", str(tiny_model), "--device", "cpu"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    response = post(client, ("night.jpg", data), explain="true", top_k=2)
    assert response.status_code == 200
    api = response.json()["results"][0]
    assert api["path"] == "night.jpg"
    cli["path"] = api["path"]
    close_enough(cli, api)
    assert set(api["explanations"]) == set(list(api["probabilities"])[:2])


def test_several_posters_keep_their_order_in_any_format(client: TestClient) -> None:
    from PIL import Image

    rgb = make_poster(3)
    cmyk = encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=90)
    grey = encode(Image.fromarray(rgb).convert("L"), "PNG")
    rgba = encode(Image.fromarray(rgb).convert("RGBA"), "PNG")
    names = ["a-cmyk.jpg", "b-grey.png", "c-rgba.png", "d.jpg", "e.jpg", "f.webp"]
    blobs = [cmyk, grey, rgba, jpeg(4), jpeg(5), encode(rgb, "WEBP")]
    response = post(client, *zip(names, blobs, strict=True), threshold="0.5")
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["path"] for r in results] == names  # two batches of 4, order kept
    for r in results:
        assert "explanations" not in r and "error" not in r  # no explain: as the CLI's --json
        assert set(r["thresholds"].values()) == {0.5}
        assert r["predicted"] == [g for g, p in r["probabilities"].items() if p >= 0.5] or (
            r["predicted"] == [next(iter(r["probabilities"]))]
        )
        assert r["size"] == r["source_size"] == [160, 236]


def test_card_is_a_png_bigger_than_the_poster(client: TestClient) -> None:
    from PIL import Image

    response = client.post("/api/card", files=upload(("p.jpg", jpeg(8)), field="file"))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    card = Image.open(io.BytesIO(response.content))
    assert card.format == "PNG" and card.width > 600 and card.height > 236
    bad = client.post("/api/card", files=upload(("p.jpg", b"nope" * 20), field="file"))
    assert bad.status_code == 415 and bad.json()["kind"] == "not_image"
    two = client.post("/api/card", files=upload(("a.jpg", jpeg(1)), ("b.jpg", jpeg(2))))
    assert two.status_code == 413 and two.json()["kind"] == "too_many_files"


# -- bad input -----------------------------------------------------------------------------------

TRUNCATED = jpeg(2, size=(400, 300))
BAD_POSTERS = {
    "empty": (b"", 422),
    "not_image": (b"this is not an image, just text that pretends\n" * 5, 415),
    "corrupt": (TRUNCATED[: len(TRUNCATED) // 2], 422),
    "too_small": (encode(make_poster(1, size=(40, 40))[:1, :1], "PNG"), 422),
    "too_large": (png_header_only(30000, 30000), 413),
}


@pytest.mark.parametrize("kind", list(BAD_POSTERS))
def test_bad_poster_gets_the_cli_kind_and_hint(
    client: TestClient, tmp_path: Path, kind: str
) -> None:
    data, status = BAD_POSTERS[kind]
    path = tmp_path / f"{kind}.png"
    path.write_bytes(data)
    with pytest.raises(PosterError) as info:  # what the CLI reports for this file
        load_poster(path, max_pixels=ServeConfig().max_pixels)
    assert info.value.kind == kind
    response = post(client, (path.name, data))
    assert response.status_code == status
    body = response.json()
    (result,) = body["results"]
    assert result["kind"] == body["kind"] == kind
    # The CLI's hint, or none where the CLI has none (its JSON leaves the key out too).
    assert result.get("hint", "") == body.get("hint", "") == info.value.hint
    assert result["error"] == body["error"] == info.value.message.replace(str(path), path.name)
    assert result["path"] == path.name
    # ... and the server keeps serving.
    assert post(client, ("fine.jpg", jpeg(9))).status_code == 200


def test_a_bad_poster_does_not_block_the_others(client: TestClient) -> None:
    response = post(client, ("good.jpg", jpeg(1)), ("bad.jpg", BAD_POSTERS["corrupt"][0]))
    assert response.status_code == 422  # like the CLI's exit 1: not every poster was read
    body = response.json()
    good, bad = body["results"]
    assert good["path"] == "good.jpg" and "probabilities" in good
    assert bad["kind"] == body["kind"] == "corrupt" and bad["path"] == "bad.jpg"


def test_request_errors_are_json_with_a_kind_and_a_hint(client: TestClient) -> None:
    cases = [
        (client.post("/api/analyze", files=upload(("p.jpg", jpeg(1)), field="poster")),
         400, "wrong_field"),
        (client.post("/api/analyze", files=upload(("p.jpg", jpeg(1))), data={"x": "1"}),
         400, "wrong_field"),
        (client.post("/api/analyze", data={"files": "not a file"},
                     headers={"content-type": "multipart/form-data; boundary=b"},
                     content=b'--b\r\nContent-Disposition: form-data; name="files"\r\n\r\n'
                     b"text\r\n--b--\r\n"),
         400, "wrong_field"),
        (client.post("/api/analyze", content=b"", headers={
            "content-type": "multipart/form-data; boundary=b"}), 400, "no_files"),
        (client.post("/api/analyze", content=jpeg(1), headers={"content-type": "image/jpeg"}),
         415, "bad_request"),
        (post(client, ("p.jpg", jpeg(1)), top_k=0), 422, "bad_parameter"),
        (post(client, ("p.jpg", jpeg(1)), threshold="high"), 422, "bad_parameter"),
        (post(client, ("p.jpg", jpeg(1)), explain="maybe"), 422, "bad_parameter"),
        (client.get("/api/nothing-here"), 404, "not_found"),
    ]  # fmt: skip
    for response, status, kind in cases:
        body = response.json()
        assert (response.status_code, body["kind"]) == (status, kind), body
        assert body["error"]
        if kind != "not_found":
            assert body["hint"]
    assert post(client, ("p.jpg", jpeg(1))).status_code == 200


# -- limits ----------------------------------------------------------------------------------------


def test_size_and_count_limits(tiny_analyzer: Any) -> None:
    big = noise_png(200)  # ~120 kB
    cfg = ServeConfig(max_file_bytes=80_000, max_files=2, max_pixels=30_000)
    with TestClient(create_app(cfg, tiny_analyzer)) as client:
        one = post(client, ("big.png", big), ("ok.jpg", jpeg(1, size=(150, 100))))
        assert one.status_code == 413
        body = one.json()
        assert body["kind"] == "too_large" and "per file" in body["error"] and body["hint"]
        assert "probabilities" in body["results"][1]
        # Over the pixel limit (settable): refused from the header, before decoding.
        pixels = post(client, ("wide.jpg", jpeg(1, size=(200, 160))))
        assert pixels.status_code == 413 and "megapixels" in pixels.json()["error"]
        # Over the request limit: refused as a whole, from Content-Length.
        two = post(client, ("a.png", big), ("b.png", big))
        assert two.status_code == 413 and two.json()["kind"] == "too_large"
        assert "results" not in two.json()
        # ... or while streaming, when the client sends no length (chunked).
        boundary = b"xyz"
        part = (b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"c.png\""
                b"\r\nContent-Type: image/png\r\n\r\n" + big + b"\r\n")  # fmt: skip
        chunks = iter([part, part, part, b"--xyz--\r\n"])
        streamed = client.post(
            "/api/analyze",
            content=chunks,
            headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"},
        )
        assert streamed.status_code == 413 and streamed.json()["kind"] == "too_large"
        many = post(client, *[(f"{i}.jpg", jpeg(i, size=(60, 40))) for i in range(3)])
        assert many.status_code == 413
        assert many.json()["kind"] == "too_many_files" and "2" in many.json()["hint"]
        assert post(client, ("ok.jpg", jpeg(1, size=(150, 100)))).status_code == 200


def test_queue_full_answers_503_then_recovers(tiny_analyzer: Any) -> None:
    gated = Gated(tiny_analyzer)
    with TestClient(create_app(ServeConfig(queue=2, threads=2), gated)) as client:
        answers: list[int] = []

        def one() -> None:
            answers.append(post(client, ("p.jpg", jpeg(1))).status_code)

        workers = [threading.Thread(target=one) for _ in range(2)]
        for w in workers:
            w.start()
        for _ in workers:
            assert gated.entered.acquire(timeout=30), "the admitted requests never started"
        assert client.get("/api/health").json()["queue"] == {"capacity": 2, "in_use": 2}
        refused = post(client, ("p.jpg", jpeg(2)))
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.json()["kind"] == "busy" and refused.json()["hint"]
        gated.gate.set()
        for w in workers:
            w.join(30)
        assert answers == [200, 200]
        assert post(client, ("p.jpg", jpeg(2))).status_code == 200
        assert client.get("/api/health").json()["queue"]["in_use"] == 0


def test_timeout_answers_504_and_the_work_still_counts_until_it_ends(tiny_analyzer: Any) -> None:
    gated = Gated(tiny_analyzer)
    with TestClient(create_app(ServeConfig(queue=1, timeout_s=0.3), gated)) as client:
        t0 = time.monotonic()
        slow = post(client, ("p.jpg", jpeg(1)))
        assert slow.status_code == 504 and slow.json()["kind"] == "timeout"
        assert time.monotonic() - t0 < 10
        # The abandoned analysis still holds its place: no pile-up of hidden work.
        assert post(client, ("p.jpg", jpeg(1))).json()["kind"] == "busy"
        gated.gate.set()
        deadline = time.monotonic() + 30
        while client.get("/api/health").json()["queue"]["in_use"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert post(client, ("p.jpg", jpeg(1))).status_code == 200


def test_a_slow_upload_cannot_hold_a_place_forever(tiny_analyzer: Any) -> None:
    """Raw ASGI: a client that trickles its body gets 408 within the timeout, and its
    place in the queue is given back."""
    import asyncio

    app = create_app(ServeConfig(queue=1, timeout_s=0.3), tiny_analyzer)
    sent: list[dict[str, Any]] = []
    head = b'--b\r\nContent-Disposition: form-data; name="files"; filename="p.jpg"\r\n\r\n'

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(0.1)
        return {"type": "http.request", "body": head if not sent else b"x", "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/analyze", "raw_path": b"/api/analyze",
        "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 9), "headers": [(b"content-type",
                                                 b"multipart/form-data; boundary=b")],
    }  # fmt: skip
    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    assert time.monotonic() - t0 < 5
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["kind"] == "timeout"
    assert app.state.service.in_use == 0


def test_uploads_leave_no_file_and_client_names_are_not_paths(
    tiny_analyzer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # where Starlette spools past 1 MB
    big = noise_png(700)  # ~1.5 MB: spooled to a temporary file, not kept in memory
    assert len(big) > 1024 * 1024
    with TestClient(create_app(ServeConfig(), tiny_analyzer)) as client:
        response = post(client, ("../../escape.png", big), ("C:\\x\\win.png", jpeg(1)))
        assert response.status_code == 200
    assert [r["path"] for r in response.json()["results"]] == ["escape.png", "win.png"]
    assert list(spool.iterdir()) == []
    assert not (tmp_path / "escape.png").exists() and not (tmp_path.parent / "escape.png").exists()


def test_model_that_cannot_load_is_reported_not_hidden(tmp_path: Path) -> None:
    cfg = ServeConfig(model=str(tmp_path / "no-model"), device="cpu")
    with TestClient(create_app(cfg)) as client:
        deadline = time.monotonic() + 30
        while (h := client.get("/api/health")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert h.status_code == 503 and h.json()["status"] == "failed"
        assert "no model bundle" in h.json()["error"] and h.json()["hint"]
        refused = post(client, ("p.jpg", jpeg(1)))
        assert refused.status_code == 503 and refused.json()["kind"] == "not_ready"
        assert "no model bundle" in refused.json()["error"]
        assert client.get("/").status_code == 200  # the page still says what is wrong


def test_a_server_with_a_prior_adapts_every_answer_and_says_so(
    tiny_model: Path, tiny_analyzer: Any, tmp_path: Path
) -> None:
    from postergenre.ensemble.label_shift import adapt_to_prior

    prior = tmp_path / "mix.json"
    prior.write_text(json.dumps({"Drama": 0.4, "Documentry": 0.3}))
    cfg = ServeConfig(model=str(tiny_model), prior=str(prior), device="cpu")
    with TestClient(create_app(cfg)) as client:
        deadline = time.monotonic() + 60
        while client.get("/api/health").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = client.get("/api/model").json()
        assert info["prior"]["file"] == str(prior) and info["prior"]["shares"]["Drama"] == 0.4
        assert info["prior"]["given"] == ["Drama"]
        assert info["prior"]["ignored"] == ["Documentry"]
        response = post(client, ("p.jpg", jpeg(31)))
        assert response.status_code == 200
        (r,) = response.json()["results"]
    plain = tiny_analyzer.analyze(decode_poster(jpeg(31)))
    j = tiny_analyzer.genres.index("Drama")
    ref = np.array([tiny_analyzer.bundle.model.reference_prior[j]])
    expected = adapt_to_prior(np.array([plain.probabilities["Drama"]]), ref, np.array([0.4]))
    assert r["probabilities"]["Drama"] == pytest.approx(float(expected[0]), abs=1e-9)
    assert r["probabilities"]["Horror"] == pytest.approx(plain.probabilities["Horror"], abs=1e-12)


def test_config_is_validated() -> None:
    from postergenre.errors import ConfigError

    for bad in ({"queue": 0}, {"max_files": 0}, {"timeout_s": 0}, {"port": 70000}):
        with pytest.raises(ConfigError, match="expected"):
            ServeConfig(**bad)


# -- the shipped model --------------------------------------------------------------------------


@pytest.mark.weights
def test_default_model_serves_explanations_with_every_cue_group() -> None:
    require_weights("mobilenet_v2", "yolo11n-seg", "retinaface_mnet025", "emotion_minixception")
    with TestClient(create_app(ServeConfig(device="cpu"))) as client:
        deadline = time.monotonic() + 120
        while client.get("/api/health").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.get("/api/health").json()["status"] == "ready"
        info = client.get("/api/model").json()
        assert [e["name"] for e in info["extractors"]] == ["cnn", "objects", "faces", "color",
                                                           "gist", "concepts"]  # fmt: skip
        assert info["metrics"]["overall"]["model"]["macro_ap"] > 0.2
        response = post(client, ("p.jpg", jpeg(11, size=(450, 300))), explain="true", top_k=3)
        assert response.status_code == 200
        (r,) = response.json()["results"]
        assert len(r["probabilities"]) == len(info["genres"]) and len(r["explanations"]) == 3
        for e in r["explanations"].values():
            total = e["base"] + sum(c["contribution"] for c in e["cues"])
            assert total + e["other"]["contribution"] == pytest.approx(e["logit"], abs=1e-4)
            assert all(c["text"] for c in e["cues"])
