"""``postergenre analyze``: genre probabilities for posters, with the cues behind them.

Results go to stdout (readable text, or one JSON object per poster with ``--json``);
progress and per-poster errors go to stderr. A poster that cannot be read does not stop
the others; the exit code is 1 if any poster failed, 0 otherwise.

``--card PATH``: with one poster, PATH is the PNG to write (unless it is an existing
folder or ends with a slash); with several posters PATH is a folder, created if needed,
that gets one ``<poster name>.png`` per poster (``name-2.png`` ... when names repeat).
"""

from __future__ import annotations

import glob
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postergenre.cli.analyze_output import (
    EXPLAIN_KEYS,
    FLAT_FORMATS,
    OutputFormat,
    ResultSink,
    check_out_file,
    resolve_format,
)
from postergenre.cli.common import ModelDir, stderr_console

if TYPE_CHECKING:
    from postergenre.analysis import Analysis, Failure, GenreExplanation

#: Folder walks take these extensions (lower-case); files named explicitly are always tried.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
_GLOB_CHARS = frozenset("*?[")


#: JSON keys that only --explain adds (--card computes them too, to draw them).
_EXPLAIN_KEYS = EXPLAIN_KEYS


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def parse_threshold(value: str) -> float | None:
    """``auto`` -> None (the model's per-genre thresholds); else a probability in [0, 1]."""
    if value.strip().lower() == "auto":
        return None
    try:
        t = float(value)
    except ValueError:
        raise typer.BadParameter(f"expected 'auto' or a number in [0, 1], got {value!r}") from None
    if not 0.0 <= t <= 1.0:
        raise typer.BadParameter(f"expected 'auto' or a number in [0, 1], got {value!r}")
    return t


def expand_posters(inputs: list[str]) -> list[tuple[str, str | None]]:
    """Poster arguments -> [(path, problem)], in the order given, paths as the user spelt them.

    Folders are walked recursively (sorted, image extensions only); globs are expanded
    (``**`` allowed, sorted). A glob or folder that yields nothing becomes one entry with a
    problem instead of failing the whole command. A named file that does not exist is kept:
    loading it reports ``missing``, like any other per-poster failure.
    """
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append((path, None))

    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = _walk(p)
            if not found:
                out.append((raw, "no poster images in this folder"))
            for f in found:
                add(f)
        elif p.exists() or not (_GLOB_CHARS & set(raw)):
            add(raw)
        else:
            matches = sorted(glob.glob(raw, recursive=True))
            files: list[str] = []
            for m in matches:
                files.extend(_walk(Path(m)) if Path(m).is_dir() else [m])
            if not files:
                out.append((raw, "no files match this pattern"))
            for f in files:
                add(f)
    return out


def _walk(folder: Path) -> list[str]:
    files: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                files.append(os.path.join(dirpath, name))
    return files


def card_paths(card: str | os.PathLike[str], posters: list[str]) -> list[Path]:
    """Where each poster's card goes (see the module docstring for the rule)."""
    text = os.fspath(card)
    folder = Path(text)
    as_folder = len(posters) > 1 or folder.is_dir() or text.endswith(("/", os.sep))
    if not as_folder:
        return [folder]
    used: dict[str, int] = {}
    out = []
    for p in posters:
        stem = Path(p).stem or "poster"
        n = used.get(stem, 0) + 1
        used[stem] = n
        out.append(folder / (f"{stem}.png" if n == 1 else f"{stem}-{n}.png"))
    return out


def register(app: typer.Typer) -> None:
    @app.command(
        "analyze",
        help=(
            "Say which genres each poster's movie belongs to, with probabilities for every "
            "genre. --explain adds the cues that raised and lowered each predicted genre "
            "(in log-odds, adding up to the model's score); --card draws a PNG summary. "
            "With several posters, --card is a folder (one PNG per poster)."
        ),
    )
    def analyze_cmd(
        posters: Annotated[
            list[str],
            typer.Argument(
                help="Poster files, folders (searched recursively for images) or globs.",
                metavar="POSTER",
                show_default=False,
            ),
        ],
        explain: Annotated[
            bool, typer.Option("--explain", help="Show the cues behind each predicted genre.")
        ] = False,
        top_k: Annotated[
            int | None,
            typer.Option(
                "--top-k",
                min=1,
                metavar="N",
                help="With --explain or --card: explain the N most probable genres "
                "instead of the predicted ones.",
            ),
        ] = None,
        threshold: Annotated[
            str,
            typer.Option(
                "--threshold",
                metavar="auto|FLOAT",
                help="'auto' (the model's tuned per-genre thresholds) or one probability "
                "for all genres.",
            ),
        ] = "auto",
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object per poster on stdout (JSON lines).")
        ] = False,
        model: ModelDir = None,
        card: Annotated[
            str | None,
            typer.Option(
                "--card",
                metavar="PATH",
                help="Write a PNG card (a folder of cards for several posters); "
                "implies the explanation.",
            ),
        ] = None,
        device: Annotated[Device, typer.Option("--device", help="Where models run.")] = Device.auto,
        cues: Annotated[
            int,
            typer.Option(
                "--cues", min=1, metavar="N", help="Cues shown per genre before 'other cues'."
            ),
        ] = 5,
        prior: Annotated[
            Path | None,
            typer.Option(
                "--prior",
                metavar="FILE",
                exists=True,
                dir_okay=False,
                help="Your catalogue's genre mix (JSON {genre: share} or CSV genre,share, "
                "shares of posters carrying each genre): probabilities and thresholds are "
                "adapted to it by the label-shift correction (the shipped model's refer to "
                "IMDb-wide shares).",
            ),
        ] = None,
        fmt: Annotated[
            OutputFormat | None,
            typer.Option(
                "--format",
                help="text (default), table (one line per poster), jsonl (as --json), json "
                "(one array), csv (one row per poster, a column per genre probability). "
                "Default: from --out's extension (.csv, .json, .jsonl), else text.",
            ),
        ] = None,
        out_file: Annotated[
            str | None,
            typer.Option(
                "--out",
                metavar="FILE",
                help="Write the results to FILE instead of stdout.",
            ),
        ] = None,
    ) -> None:
        thr = parse_threshold(threshold)
        chosen = resolve_format(fmt.value if fmt is not None else None, as_json, out_file)
        if explain and chosen in FLAT_FORMATS:
            raise typer.BadParameter(
                f"--explain adds nested cues, which {chosen} cannot hold: use --format "
                "text, json or jsonl"
            )
        check_out_file(out_file)
        code = run(
            posters,
            explain=explain,
            top_k=top_k,
            threshold=thr,
            as_json=as_json,
            model=model,
            card=card,
            device=device.value,
            cues=cues,
            prior=prior,
            fmt=chosen,
            out_file=out_file,
        )
        raise typer.Exit(code)


def run(
    inputs: list[str],
    *,
    explain: bool = False,
    top_k: int | None = None,
    threshold: float | None = None,
    as_json: bool = False,
    model: Path | None = None,
    card: str | None = None,
    device: str = "auto",
    cues: int = 5,
    prior: Path | None = None,
    fmt: str | None = None,
    out_file: str | None = None,
) -> int:
    """The command's work, callable without Typer; returns the exit code."""
    from postergenre.analysis import Analyzer, Failure

    fmt = resolve_format(fmt, as_json, out_file)
    err = stderr_console()
    items = expand_posters(inputs)
    todo = [path for path, problem in items if problem is None]
    cards = card_paths(card, todo) if card is not None else []
    missing = [Failure(p, "missing", f"{p}: {why}") for p, why in items if why is not None]
    for f in missing:
        _report_failure(f, err)
    if not todo:
        # Nothing to analyse, so no model to name the genre columns: failure rows only.
        sink = ResultSink(fmt, out_file, [])
        for f in missing:
            sink.failure(f)
        sink.close()
        return 1 if missing else 0

    with err.status("loading the model...", spinner="dots") if err.is_terminal else _null():
        analyzer = Analyzer.load(model, device=device, prior=prior)

    adapted = analyzer.bundle.card.get("adapted_prior") if prior is not None else None
    sink = ResultSink(
        fmt, out_file, list(analyzer.genres), explain=explain, cues=cues,
        prior={"file": str(prior), "shares": adapted} if adapted else None,
    )  # fmt: skip
    failed = len(missing)
    try:
        if adapted:
            shares = ", ".join(
                f"{g} {v:.0%}" for g, v in sorted(adapted.items(), key=lambda t: -t[1])
            )
            sink.note(f"Probabilities adapted to the genre mix in {prior}: {shares}")
        for f in missing:
            sink.failure(f)
        results = analyzer.iter_analyze(
            todo,
            explain=explain or card is not None,
            threshold=threshold,
            top_k=top_k,
            details=card is not None,
            keep_image=card is not None,
        )
        with _progress(err, len(todo)) as advance:
            for i, result in enumerate(results):
                advance()
                if isinstance(result, Failure):
                    failed += 1
                    _report_failure(result, err)
                    sink.failure(result)
                    continue
                card_path = None
                if card is not None:
                    card_path = cards[i]
                    card_failure = _write_card(result, card_path, cues)
                    if card_failure is not None:
                        failed += 1
                        _report_failure(card_failure, err)
                        sink.failure(card_failure)
                        continue
                sink.result(result, card_path)
    finally:
        sink.close()
    if failed and len(items) > 1:
        err.print(f"{failed} of {len(items)} posters could not be analysed", style="red")
    return 1 if failed else 0


def _write_card(result: Analysis, path: Path, cues: int) -> Failure | None:
    """Draw and save one card; a card that cannot be written fails that poster only."""
    from postergenre.analysis import Failure
    from postergenre.card import CardStyle, save_card

    try:
        save_card(result, path, CardStyle(cues_per_genre=min(cues, 6)))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return Failure(result.path, "card", f"{path}: cannot write the card ({reason})")
    finally:
        result.image = None  # free the pixels once drawn
    return None


class _progress:
    """A transient progress bar on stderr for several posters, when stderr is a terminal."""

    def __init__(self, console: Any, total: int) -> None:
        self.console = console
        self.total = total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.total < 2 or not self.console.is_terminal:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "analysing",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        task = self.bar.add_task("posters", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stdout_console() -> Any:
    from rich.console import Console

    # Not a terminal (a pipe, a test): no colour codes, and no wrapping at 80 columns.
    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def _report_failure(f: Failure, err: Any) -> None:
    """One line on stderr (the output format has its own failure row, see ResultSink)."""
    line = f"postergenre: error: {f.message}"
    if f.hint:
        line += f" (hint: {f.hint})"
    err.print(line, style="red", markup=False, highlight=False, soft_wrap=True)


# -- text rendering ---------------------------------------------------------------------------


def _pct(p: float) -> str:
    if 0 < p < 0.005:
        return "<1%"
    if 0.995 < p < 1:
        return ">99%"
    return f"{p:.0%}"


def probabilities_line(a: Analysis) -> str:
    """ "Horror 76%, Action 22%, Documentary 2%, Romance 0%"."""
    return ", ".join(f"{g} {_pct(p)}" for g, p in a.probabilities.items())


def render_text(
    console: Any, a: Analysis, *, explain: bool, cues: int = 5, card_path: Path | None = None
) -> None:
    from rich.markup import escape

    name = a.path if a.path is not None else "poster"
    console.print(f"[bold]{escape(name)}[/bold]  [dim]{a.size[0]}x{a.size[1]}[/dim]")
    console.print(f"  predicted: [bold green]{escape(', '.join(a.predicted))}[/bold green]")
    console.print(f"  {escape(probabilities_line(a))}")
    if explain:
        for e in a.explanations.values():
            _render_explanation(console, e, cues)
    if card_path is not None:
        console.print(f"  card: {escape(str(card_path))}")
    console.print()


def explanation_rows(e: GenreExplanation, cues: int = 5) -> list[tuple[str, float]]:
    """(label, log-odds) rows: base, the top cues, other cues; they sum to the logit."""
    shown, other, n_other = e.top(cues)
    rows: list[tuple[str, float]] = [("base (a typical poster)", e.base)]
    rows += [(c.text, c.contribution) for c in shown]
    if n_other:
        rows.append((f"other cues ({n_other})", other))
    return rows


def _render_explanation(console: Any, e: GenreExplanation, cues: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = (
        f"  Why {escape(e.genre)}: {_pct(e.probability)} "
        f"(threshold {_pct(e.threshold)}); log-odds {e.logit:+.2f}"
    )
    console.print()
    console.print(title, highlight=False)
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    table.add_column(width=4)
    table.add_column(ratio=1, overflow="fold")
    table.add_column(justify="right", width=7)
    for i, (label, value) in enumerate(explanation_rows(e, cues)):
        is_base = i == 0
        sign = " " if is_base else ("+" if value >= 0 else "-")
        colour = (
            "dim"
            if is_base or label.startswith("other cues")
            else ("green" if value >= 0 else "red")
        )
        table.add_row(f"  {sign}", escape(label), f"[{colour}]{value:+.2f}[/{colour}]")
    table.add_row("  =", "log-odds of " + escape(e.genre), f"[bold]{e.logit:+.2f}[/bold]")
    groups = ", ".join(f"{_GROUP_WORDS.get(g, g)} {v:+.2f}" for g, v in e.groups.items())
    console.print(table)
    console.print(f"    [dim]by group: {escape(groups)}[/dim]")


_GROUP_WORDS = {
    "objects": "objects",
    "faces": "faces",
    "color": "colour",
    "gist": "texture/layout",
    "cnn": "CNN style",
    "other": "other",
}
