"""`postergenre store info`: what a feature store holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

store_app = typer.Typer(help="Inspect feature stores.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")


#: Files looked at to tell a folder of posters from an empty or unrelated one.
_PEEK = 200


def _check_not_posters(path: Path) -> None:
    """A folder of poster images given where a store belongs: say what to run instead
    (the store's own error would suggest writing a store into the posters' folder)."""
    import itertools
    import os

    from postergenre.errors import StoreError
    from postergenre.features.inputs import is_image_name

    if not path.is_dir():
        return
    names = itertools.islice((n for _, _, files in os.walk(path) for n in files), _PEEK)
    images = sum(is_image_name(n) for n in names)
    if images:
        raise StoreError(
            f"no feature store at {path}: it is a folder of posters",
            hint=f"make a store of them with `postergenre extract {path} --out STORE`, "
            "then run `postergenre store info STORE`",
        )


@store_app.command("info")
def info(
    store: Annotated[Path, typer.Argument(metavar="STORE", help="The feature store folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    failures: Annotated[
        bool, typer.Option("--failures", help="Also list every failed row.")
    ] = False,
) -> None:
    """Per extractor: version, config, features, rows ok/failed (by kind)."""
    from postergenre.cli.common import echo_json
    from postergenre.errors import StoreError
    from postergenre.features.store import FeatureStore

    try:
        fs = FeatureStore(store)
    except StoreError:
        _check_not_posters(store)
        raise
    summary = fs.info()
    fails = fs.failures() if failures or as_json else []
    if as_json:
        summary["failures"] = [f._asdict() for f in fails]
        echo_json(summary)
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(
        f"store {escape(summary['store'])}: {summary['posters']} posters "
        f"({summary['paths']} paths) in {summary['shards']} shards"
    )
    table = Table()
    for col in (
        "extractor",
        "version",
        "features",
        "rows",
        "ok",
        "failed",
        "shards done",
        "config",
    ):
        table.add_column(col)
    for name, e in summary["extractors"].items():
        config = ", ".join(f"{k}={v}" for k, v in e["config"].items())
        table.add_row(
            name, str(e["version"]), str(e["features"]), str(e["rows"]), str(e["ok"]),
            str(e["failed"]), f"{e['shards_done']}/{e['shards_planned']}", escape(config),
        )  # fmt: skip
    console.print(table)
    kinds: dict[str, int] = {}
    for e in summary["extractors"].values():
        for k, v in e["failed_by_kind"].items():
            kinds[k] = max(kinds.get(k, 0), v)
    if kinds:
        console.print(
            "failures by kind: " + ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
        )
    for f in fails:
        console.print(
            escape(f"{f.path}: {f.extractor}: {f.status}: {f.error}"),
            highlight=False,
            soft_wrap=True,
        )
