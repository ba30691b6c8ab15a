"""The feature store is its own seam: extraction writes it, the ensemble and predict read it.

Extractors never import it; the store imports no extractor and no model code; the old
import path ``postergenre.features.store`` is the same objects.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import postergenre

SRC = Path(postergenre.__file__).parent
#: Modules of features/ that run extraction (and may write the store); the rest are extractors.
ENGINES = {"__init__.py", "runner.py", "ray_engine.py", "store.py", "inputs.py"}


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (top level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_old_import_path_gives_the_same_objects() -> None:
    import postergenre.features.store as old
    import postergenre.store as new

    for name in new.__all__:
        assert getattr(old, name) is getattr(new, name), name
    assert old._IndexRow is new.IndexRow


def test_extractors_know_nothing_of_the_store() -> None:
    extractors = [p for p in (SRC / "features").glob("*.py") if p.name not in ENGINES]
    assert len(extractors) >= 5  # cnn, objects, faces, color, gist and their helpers
    for path in extractors:
        bad = {m for m in imported_modules(path) if "store" in m.split(".")}
        assert not bad, f"{path.name} imports {bad}"


def test_the_ensemble_reads_the_store_but_knows_no_extractor() -> None:
    for path in (SRC / "ensemble").glob("*.py"):
        features = {m for m in imported_modules(path) if m.startswith("postergenre.features")}
        # postergenre.features.store is the store's old address (a re-export), not extractors.
        assert features <= {
            "postergenre.features.store",
            *{
                f"postergenre.features.store.{n}"
                for n in ("FeatureStore", "_IndexRow", "manifest_differences")
            },
        }, f"{path.name} imports {features}"


def test_the_store_imports_no_extractor_model_or_torch() -> None:
    for path in (SRC / "store").glob("*.py"):
        mods = imported_modules(path)
        assert not {m for m in mods if m.startswith("postergenre.ensemble")}, path.name
        # The registry's names (a dict of strings) give the column order, nothing else.
        assert {m for m in mods if m.startswith("postergenre.features")} <= {
            "postergenre.features",
            "postergenre.features.REGISTRY",
        }, path.name
    code = (
        "import sys\nimport postergenre.store\n"
        "print([m for m in sys.modules if m in ('torch', 'cv2', 'xgboost') "
        "or m.startswith(('postergenre.features.', 'postergenre.ensemble'))])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
