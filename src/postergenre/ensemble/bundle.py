"""Model bundles: a directory of JSON, XGBoost UBJSON and safetensors. Never pickle.

Layout::

    MODEL/
      bundle.json           format, genres, thresholds, feature names, extractors
                            (name, version, config, feature names), model state, and the
                            sha256 of every other file
      arrays.safetensors    every numeric array (meta weights, MLP weights, priors)
      base0-booster.ubj     the XGBoost model (its own format)
      reference.json        per interpretable feature: training median, p10, p90
      threshold_rows.json   poster ids (16-hex prefixes) the thresholds were tuned on
      card.json             the model card as data; MODEL_CARD.md the same for people

Loading checks the format, refuses any pickle-capable file (``*.pkl``, ``*.pickle``,
``*.joblib``, ``*.pt``, ``*.pth``, ``.npz`` with object arrays) and verifies every
file's sha256, so a bundle from a stranger cannot run code, and a damaged one is named.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from postergenre.errors import ModelError

if TYPE_CHECKING:
    from postergenre.ensemble.predictor import GenrePredictor
    from postergenre.features.store import FeatureStore
    from postergenre.input_scale import InputScale

FORMAT = "postergenre.model-bundle"
FORMAT_VERSION = 1
BUNDLE_FILE = "bundle.json"
ARRAYS_FILE = "arrays.safetensors"
REFERENCE_FILE = "reference.json"
CARD_FILE = "card.json"
CARD_MD_FILE = "MODEL_CARD.md"
THRESHOLD_ROWS_FILE = "threshold_rows.json"
#: Files that can carry pickled (executable) content; a bundle holding one is refused.
UNSAFE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".dill", ".cloudpickle")
#: Length of the poster-id prefixes recorded for threshold rows (64 bits: no collisions
#: among any realistic poster set).
ID_PREFIX = 16
#: Keys of an extractor description that a bundle records and compares.
EXTRACTOR_KEYS = ("extractor", "version", "config", "feature_names")


def default_bundle_path() -> Path:
    """Where the shipped model lives (package data: ``postergenre/models/default``)."""
    return Path(__file__).resolve().parents[1] / "models" / "default"


@dataclass(eq=False)
class Bundle:
    """A loaded model bundle.

    ``model`` is the fitted model, a :class:`GenrePredictor` (numpy only: predicting and
    explaining imports no scikit-learn or xgboost); ``genres`` (G,); ``thresholds`` (G,)
    float; ``extractors``: one description per extractor (``extractor``, ``version``,
    ``config``, ``feature_names``) in column order; ``feature_names`` (d,) the model's
    input columns; ``reference``: feature -> {"median", "p10", "p90"}; ``card``: the
    model card; ``threshold_ids``: poster-id prefixes the thresholds were tuned on.
    """

    model: GenrePredictor
    genres: list[str]
    thresholds: np.ndarray
    extractors: list[dict[str, Any]]
    feature_names: list[str]
    card: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    path: Path | None = None
    threshold_ids: frozenset[str] = frozenset()

    @property
    def extractor_names(self) -> list[str]:
        return [str(e["extractor"]) for e in self.extractors]

    def with_prior(self, prior: Any) -> Bundle:
        """This bundle for a catalogue whose genre shares are ``prior`` (a prior file's path,
        a ``GenrePrior``, genre -> share, or (G,) shares): probabilities and thresholds move
        by the label-shift correction (:meth:`GenrePredictor.adapted`); the card records
        the adapted prior, which genres the prior gave (the others keep their reference
        share) and which names it gave that are no genre of the model (ignored)."""
        import dataclasses

        from postergenre.ensemble.label_shift import GenrePrior, read_prior

        if isinstance(prior, str | os.PathLike):
            prior = read_prior(prior)
        if isinstance(prior, GenrePrior):
            prior = dict(prior.shares)
        model = self.model.adapted(prior)
        named = [str(k) for k in prior] if isinstance(prior, Mapping) else list(self.genres)
        card = {
            **self.card,
            "adapted_prior": dict(zip(self.genres, map(float, model.reference_prior), strict=True)),
            "adapted_prior_given": [g for g in self.genres if g in named],
            "adapted_prior_ignored": [k for k in named if k not in self.genres],
        }
        return dataclasses.replace(
            self, model=model, thresholds=np.asarray(model.thresholds_), card=card
        )

    @property
    def input_scale(self) -> InputScale:
        """The scale the training posters were brought to before extraction (native for
        bundles that do not record one); analyze brings every poster to it."""
        from postergenre.input_scale import InputScale

        scales = {str(InputScale.from_record(e.get("input"))) for e in self.extractors}
        if len(scales) > 1:
            raise ModelError(
                f"model {self._where()} mixes extractors made at input scales {sorted(scales)}"
            )
        return InputScale.from_record(self.extractors[0].get("input") if self.extractors else None)

    def check_features(self, feature_names: Sequence[str]) -> None:
        """Raise ModelError unless ``feature_names`` are exactly the model's columns."""
        check_feature_names(self.feature_names, feature_names, where=self._where())

    def check_extractors(
        self, descriptions: Sequence[Mapping[str, Any]], source: str = "the store"
    ) -> None:
        """Raise ModelError naming every difference between the bundle's extractors and
        ``descriptions`` (store manifests or :meth:`Extractor.describe` dicts)."""
        from postergenre.features.store import manifest_differences

        given = {str(d.get("extractor")): d for d in descriptions}
        problems = []
        for want in self.extractors:
            name = str(want["extractor"])
            have = given.get(name)
            if have is None:
                problems.append(f"{source} has no {name!r} features")
                continue
            diffs = manifest_differences(dict(have), dict(want), degrade=False)
            # manifest_differences words it as store vs now; here "now" is the model.
            problems += [f"{name}: " + d.replace(" now", " in the model") for d in diffs]
            if not diffs and list(have.get("feature_names") or []) != list(want["feature_names"]):
                problems.append(f"{name}: feature names differ")
        if problems:
            raise ModelError(
                f"{source} does not match the model {self._where()}: " + "; ".join(problems),
                hint="extract features with the extractors (names, versions, configs) "
                "the model was trained on",
            )

    def check_store(self, store: FeatureStore) -> None:
        """Raise ModelError unless ``store`` holds every extractor of the model, made alike."""
        have = set(store.extractors())
        descriptions = [store.manifest(n) for n in self.extractor_names if n in have]
        self.check_extractors(descriptions, source=f"store {store.path}")

    def _where(self) -> str:
        return f"({self.path})" if self.path else ""


def check_feature_names(expected: Sequence[str], given: Sequence[str], where: str = "") -> None:
    expected, given = list(expected), list(given)
    if expected == given:
        return
    missing = [n for n in expected if n not in set(given)]
    extra = [n for n in given if n not in set(expected)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
    if not parts:
        parts.append("same names in another order")
    raise ModelError(
        f"features do not match the model {where}: expected {len(expected)} features, got "
        f"{len(given)}; " + "; ".join(parts),
        hint="use features from the extractors the model was trained on",
    )


def feature_reference(
    X: np.ndarray, feature_names: Sequence[str], skip_prefixes: Sequence[str] = ("cnn.",)
) -> dict[str, dict[str, float]]:
    """Per interpretable feature: median, p10 and p90 over the rows of X (NaNs ignored)."""
    out: dict[str, dict[str, float]] = {}
    X = np.asarray(X, dtype=np.float64)
    for j, name in enumerate(feature_names):
        if any(name.startswith(p) for p in skip_prefixes):
            continue
        col = X[:, j]
        col = col[np.isfinite(col)]
        if not len(col):
            continue
        p10, med, p90 = np.percentile(col, [10, 50, 90])
        out[name] = {"median": float(med), "p10": float(p10), "p90": float(p90)}
    return out


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe(extractor: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in EXTRACTOR_KEYS if k not in extractor]
    if missing:
        raise ModelError(f"extractor description lacks {missing}: {dict(extractor)!r:.200}")
    keys = EXTRACTOR_KEYS + (("input",) if "input" in extractor else ())
    return json.loads(json.dumps({k: extractor[k] for k in keys}))


def save_bundle(
    model: GenrePredictor,
    directory: str | os.PathLike[str],
    *,
    card: Mapping[str, Any] | None = None,
    extractors: Sequence[Mapping[str, Any]] = (),
    reference: Mapping[str, Mapping[str, float]] | None = None,
    threshold_ids: Sequence[str] = (),
    card_markdown: str | None = None,
) -> Path:
    """Write ``model`` as a bundle directory (replacing a bundle already there).

    ``extractors``: descriptions of the extractors whose features, concatenated in this
    order, are the model's columns (checked). ``threshold_ids``: poster ids of the rows
    the thresholds were tuned on (recorded so evaluation on them can be flagged).
    """
    from safetensors.numpy import save_file

    target = Path(directory)
    meta, arrays, files = model.to_state()
    described = [_describe(e) for e in extractors]
    if described:
        columns = [n for e in described for n in e["feature_names"]]
        check_feature_names(
            columns, meta["feature_names"], where="(extractors given to save_bundle)"
        )
    if target.exists():
        if not target.is_dir():
            raise ModelError(f"{target} exists and is not a directory")
        if any(target.iterdir()) and not (target / BUNDLE_FILE).is_file():
            raise ModelError(
                f"{target} is a non-empty folder that is not a model bundle",
                hint="give a new or empty folder to --out",
            )
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        blobs: dict[str, bytes] = dict(files)
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / ARRAYS_FILE))
        blobs[ARRAYS_FILE] = (tmp / ARRAYS_FILE).read_bytes()
        json_files = {
            REFERENCE_FILE: dict(reference or {}),
            CARD_FILE: dict(card or {}),
            THRESHOLD_ROWS_FILE: sorted({str(i)[:ID_PREFIX] for i in threshold_ids}),
        }
        for name, obj in json_files.items():
            blobs[name] = (
                json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n"
            ).encode()
        if card_markdown is not None:
            blobs[CARD_MD_FILE] = card_markdown.encode()
        for name, data in blobs.items():
            (tmp / name).write_bytes(data)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "genres": meta["genres"],
            "thresholds": [float(t) for t in model.thresholds_],
            "feature_names": meta["feature_names"],
            "extractors": described,
            "model": meta,
            "files": {name: _sha256(data) for name, data in sorted(blobs.items())},
        }
        (tmp / BUNDLE_FILE).write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def refuse_unsafe(directory: Path) -> None:
    """Raise ModelError if the bundle holds any file that could carry pickled code."""
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix.lower() in UNSAFE_SUFFIXES:
            raise ModelError(
                f"{directory}: refusing a bundle holding a pickle-capable file ({path.name}): "
                "loading it could run arbitrary code",
                hint="get bundles only from postergenre train; delete the file if you made it",
            )
        if path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as npz:
                    for key in npz.files:
                        npz[key]
            except ValueError:
                raise ModelError(
                    f"{directory}: refusing a bundle whose {path.name} holds object "
                    "(pickled) arrays",
                    hint="get bundles only from postergenre train",
                ) from None
            except (OSError, EOFError) as exc:
                raise ModelError(f"{directory}: {path.name} is unreadable ({exc})") from None


def load_bundle(
    directory: str | os.PathLike[str] | None = None, n_jobs: int | None = None
) -> Bundle:
    """Load a bundle (default: :func:`default_bundle_path`) without unpickling anything."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    from postergenre.ensemble.predictor import GenrePredictor

    path = Path(directory) if directory is not None else default_bundle_path()
    if not (path / BUNDLE_FILE).is_file():
        if directory is None:
            raise ModelError(
                f"no default model at {path}",
                hint="train one with `postergenre train STORE --labels CSV --out MODEL` "
                "and pass --model MODEL",
            )
        raise ModelError(
            f"no model bundle at {path} (no {BUNDLE_FILE})",
            hint="pass the folder `postergenre train --out` wrote",
        )
    refuse_unsafe(path)
    try:
        manifest = json.loads((path / BUNDLE_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path / BUNDLE_FILE}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(f"{path} is not a postergenre model bundle")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(
            f"{path}: bundle format {manifest.get('format_version')} is newer than this "
            f"postergenre reads ({FORMAT_VERSION})",
            hint="upgrade postergenre",
        )
    blobs: dict[str, bytes] = {}
    for name, digest in dict(manifest.get("files", {})).items():
        file = path / name
        if Path(name).name != name or not file.is_file():
            raise ModelError(f"{path}: bundle file {name!r} is missing")
        data = file.read_bytes()
        if _sha256(data) != digest:
            raise ModelError(
                f"{path}: {name} does not match its recorded sha256 (damaged or edited)",
                hint="copy the bundle again",
            )
        blobs[name] = data
    if ARRAYS_FILE not in blobs:
        raise ModelError(f"{path}: bundle has no {ARRAYS_FILE}")
    try:
        arrays = load(blobs[ARRAYS_FILE])
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"{path}: {ARRAYS_FILE} unreadable ({exc})") from None
    model = GenrePredictor.from_state(manifest.get("model", {}), arrays, blobs, n_jobs=n_jobs)

    def _json(name: str, default: Any) -> Any:
        return json.loads(blobs[name]) if name in blobs else default

    extractors = list(manifest.get("extractors", []))
    feature_names = list(manifest.get("feature_names", []))
    if feature_names != [str(n) for n in model.feature_names_in_]:
        raise ModelError(f"{path}: damaged bundle (feature names disagree with the model state)")
    if extractors:
        check_feature_names(
            [n for e in extractors for n in e.get("feature_names", [])],
            feature_names,
            where=f"({path})",
        )
    return Bundle(
        model=model,
        genres=list(model.genres_),
        thresholds=model.thresholds_,
        extractors=extractors,
        feature_names=feature_names,
        card=_json(CARD_FILE, {}),
        reference=_json(REFERENCE_FILE, {}),
        path=path,
        threshold_ids=frozenset(_json(THRESHOLD_ROWS_FILE, [])),
    )
