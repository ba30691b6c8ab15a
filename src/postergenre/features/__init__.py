"""Feature extractors, registered by name and imported lazily.

``get_extractor("cnn", backbone="resnet18")`` builds an extractor without importing torch;
``load(device)`` on it does the heavy work.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from postergenre.errors import ConfigError

if TYPE_CHECKING:
    from postergenre.features.base import Extractor

#: name -> "module:Class"; the one registry of extractors.
REGISTRY: dict[str, str] = {
    "cnn": "postergenre.features.cnn:CNNExtractor",
    "objects": "postergenre.features.objects:ObjectsExtractor",
    "faces": "postergenre.features.faces:FacesExtractor",
    "color": "postergenre.features.color:ColorExtractor",
    "gist": "postergenre.features.gist:GistExtractor",
    "concepts": "postergenre.features.concepts:ConceptsExtractor",
}

#: The extractors a default run uses, in this order.
DEFAULT_EXTRACTORS: tuple[str, ...] = ("cnn", "objects", "faces", "color", "gist", "concepts")


def available() -> list[str]:
    """Registered extractor names."""
    return list(REGISTRY)


def extractor_class(name: str) -> type[Extractor]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown extractor {name!r}; expected one of: {', '.join(REGISTRY)}")
    module_name, _, class_name = REGISTRY[name].partition(":")
    cls: type[Extractor] = getattr(importlib.import_module(module_name), class_name)
    return cls


def get_extractor(name: str, config: Any = None, **overrides: Any) -> Extractor:
    """Build (not load) the extractor registered as ``name``."""
    return extractor_class(name)(config, **overrides)


def extractor_from_record(name: str, config: dict[str, Any]) -> Extractor:
    """The extractor a store manifest or model bundle recorded (its ``config_dict()``):
    options the record lacks take the value they had before they existed, not today's
    default (see ``Extractor.RECORD_DEFAULTS``)."""
    cls = extractor_class(name)
    return cls(None, **{**cls.RECORD_DEFAULTS, **config})
