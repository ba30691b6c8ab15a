"""`postergenre weights list|fetch|verify|import`: the pretrained files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypedDict

import typer

from postergenre.cli.common import echo_json

weights_app = typer.Typer(
    help="List, fetch, verify and import the pretrained files.", no_args_is_help=True
)


class _FileRow(TypedDict):
    """One line of `weights list` (a JSON object with --json)."""

    name: str
    file: str
    size: int | None
    sha256: str
    licence: str
    role: str
    state: str
    path: str | None
    sources: list[str]


def register(app: typer.Typer) -> None:
    app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per file.")] = False,
) -> None:
    """Name, file, size, licence, and whether each file is present and verified."""
    from postergenre import weights

    rows: list[_FileRow] = []
    for name, spec in weights.MANIFEST.items():
        st = weights.status(name)
        rows.append(
            {
                "name": name,
                "file": spec.filename,
                "size": spec.size,
                "sha256": spec.expected_hash,
                "licence": spec.licence,
                "role": spec.role,
                "state": {"ok": "present", "missing": "missing", "corrupt": "CORRUPT"}[st.state],
                "path": str(st.path) if st.path else None,
                "sources": [s.describe() for s in spec.sources],
            }
        )
    if as_json:
        for row in rows:
            echo_json(row)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"pretrained files (cache: {weights.cache_dir()})")
    for col in ("name", "file", "size", "licence", "state"):
        table.add_column(col)
    for row in rows:
        size = f"{row['size'] / 1e6:.1f} MB" if row["size"] else "?"
        table.add_row(row["name"], row["file"], size, row["licence"], row["state"])
    Console().print(table)


@weights_app.command("fetch")
def fetch(
    names: Annotated[
        list[str] | None, typer.Argument(help="Files to fetch (default: all).")
    ] = None,
) -> None:
    """Fetch files that are missing or corrupt; files already verified are left alone."""
    from postergenre import weights
    from postergenre.errors import WeightsError

    wanted = names or list(weights.MANIFEST)
    failed: list[str] = []
    for name in wanted:
        st = weights.status(name)
        if st.state == "ok":
            typer.echo(f"{name}: present ({st.path})", err=True)
            continue
        if weights.offline():
            failed.append(f"{name}: POSTERGENRE_OFFLINE is set")
            continue
        try:
            path = weights.fetch_one(name)
        except WeightsError as exc:
            failed.append(f"{name}: {exc.message}")
            continue
        typer.echo(f"{name}: fetched ({path})", err=True)
    if failed:
        explicit = bool(names)
        for line in failed:
            typer.echo(f"postergenre: could not fetch {line}", err=True)
        # With no names, files that only a model hub offers (e.g. resnet*) may be missing
        # on machines without that hub; the files the default model needs must succeed.
        needed = set(weights.DEFAULT_NEEDS)
        if explicit or any(line.split(":")[0] in needed for line in failed):
            raise typer.Exit(1)


@weights_app.command("verify")
def verify() -> None:
    """Check the sha256 of every present file; exit 1 if any is corrupt."""
    from postergenre import weights

    bad = 0
    for name in weights.MANIFEST:
        st = weights.status(name)
        if st.state == "corrupt":
            bad += 1
            typer.echo(
                f"{name}: CORRUPT: {st.detail} "
                f"(it will not be used; run `postergenre weights fetch {name}`)"
            )
        else:
            state = "ok" if st.state == "ok" else "missing"
            where = f" ({st.path})" if st.path else ""
            typer.echo(f"{name}: {state}{where}")
    if bad:
        raise typer.Exit(1)


@weights_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="A file got by hand.")],
) -> None:
    """Adopt a file obtained by hand, after checking its sha256 against the manifest."""
    from postergenre import weights

    name, target = weights.import_file(file)
    typer.echo(f"{name}: imported to {target}")
