"""``postergenre analyze``: genre probabilities for posters, with the cues behind them.

Results go to stdout (readable text, or one JSON object per poster with ``--json``);
progress and per-poster errors go to stderr. A poster that cannot be read does not stop
the others; the exit code is 1 if any poster failed, 0 otherwise.

``--card PATH`` (see :func:`card_paths`):

- a PATH ending in ``.png``, ``.jpg`` or ``.jpeg`` is a file name, and the card is
  written in that format; with several posters each card is ``<PATH stem>-<poster
  name><ext>`` beside it (``card.png`` -> ``card-poster1.png``, ``card-poster2.png``);
- any other PATH without an extension, an existing folder, or a PATH ending with a
  slash is a folder, created if needed, with one ``<poster name>.png`` per poster;
- another extension (``card.gif``) is refused before any model is loaded.

Repeated poster names get ``-2``, ``-3`` ... so no card overwrites another.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postergenre.card import FORMATS as CARD_FORMATS
from postergenre.cli.analyze_output import (
    EXPLAIN_KEYS,
    FLAT_FORMATS,
    OutputFormat,
    ResultSink,
    check_out_file,
    resolve_format,
)
from postergenre.cli.common import DEVICE_HELP, Device, ModelDir, PriorFile, stderr_console
from postergenre.cues import NOT_PREDICTED, points
from postergenre.errors import ConfigError
from postergenre.images import DEFAULT_MAX_PIXELS

if TYPE_CHECKING:
    from postergenre.analysis import Analysis, Failure, GenreExplanation

#: Folder walks take these extensions (lower-case); files named explicitly are always tried.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)
_GLOB_CHARS = frozenset("*?[")


#: JSON keys that only --explain adds (--card computes them too, to draw them).
_EXPLAIN_KEYS = EXPLAIN_KEYS
#: Re-exported for ``serve``, which takes the same ``--device``.
__all__ = ["Device", "card_paths", "expand_posters", "parse_threshold", "run"]


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


def prior_note(card: dict[str, Any], prior: object) -> str:
    """One line: the shares a prior file set, and what kept its reference share or was
    ignored (the card's ``adapted_prior*`` entries, :meth:`Bundle.with_prior`)."""
    adapted: dict[str, float] = card["adapted_prior"]
    given = card.get("adapted_prior_given", list(adapted))
    shares = ", ".join(f"{g} {adapted[g]:.0%}" for g in sorted(given, key=lambda g: -adapted[g]))
    note = f"Probabilities adapted to the genre mix in {prior}: {shares}"
    if len(given) < len(adapted):
        note += "; the other genres keep the model's reference shares"
    ignored = card.get("adapted_prior_ignored") or []
    if ignored:
        note += f"; ignored, not genres of this model: {', '.join(ignored)}"
    return note


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
    """Where each poster's card goes (see the module docstring for the rule).

    Raises ConfigError for a file name whose extension is no card format.
    """
    text = os.fspath(card)
    target = Path(text)
    suffix = target.suffix.lower()
    if target.is_dir() or text.endswith(("/", os.sep)) or not suffix:
        return [target / name for name in _unique_names(posters, "", ".png")]
    if suffix not in CARD_FORMATS:  # the card module's formats, by file extension
        raise ConfigError(
            f"--card {text}: expected a .png or .jpg file name or a folder, got a {suffix} file",
            hint="name the card .png or .jpg, or end a folder name with /",
        )
    if len(posters) == 1:
        return [target]
    prefix = f"{target.stem}-"
    return [target.with_name(name) for name in _unique_names(posters, prefix, target.suffix)]


def _unique_names(posters: list[str], prefix: str, suffix: str) -> list[str]:
    """``<prefix><poster stem><suffix>`` per poster; ``-2``, ``-3`` ... when stems repeat."""
    used: dict[str, int] = {}
    out = []
    for p in posters:
        stem = Path(p).stem or "poster"
        n = used.get(stem, 0) + 1
        used[stem] = n
        out.append(f"{prefix}{stem}{suffix}" if n == 1 else f"{prefix}{stem}-{n}{suffix}")
    return out


def register(app: typer.Typer) -> None:
    @app.command(
        "analyze",
        help=(
            "Say which genres each poster's movie belongs to, with probabilities for every "
            "genre. A genre is predicted when its probability reaches its threshold; every "
            "poster gets at least one genre (the most probable, when none reaches its "
            "threshold) unless --no-at-least-one. --explain adds the cues that raised and "
            "lowered each predicted genre, each with how many percentage points the "
            "probability would lose (or gain) without it; --verbose adds the exact "
            "log-odds, which add up to the model's score. --card draws a picture summary."
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
                "instead of the predicted ones (an error without them).",
            ),
        ] = None,
        threshold: Annotated[
            str,
            typer.Option(
                "--threshold",
                metavar="auto|FLOAT",
                help="'auto' (the model's tuned per-genre thresholds) or one probability "
                "for all genres. A genre whose threshold is above 100% is marked 'not "
                "predicted by this model'.",
            ),
        ] = "auto",
        at_least_one: Annotated[
            bool,
            typer.Option(
                "--at-least-one/--no-at-least-one",
                help="Predict at least one genre per poster (the model's minimum): when no "
                "genre reaches its threshold, the most probable one is predicted anyway, "
                "and the output says so. --no-at-least-one predicts only genres at or over "
                "their threshold, possibly none.",
            ),
        ] = True,
        as_json: Annotated[
            bool, typer.Option("--json", help="One JSON object per poster on stdout (JSON lines).")
        ] = False,
        model: ModelDir = None,
        card: Annotated[
            str | None,
            typer.Option(
                "--card",
                metavar="PATH",
                help="Draw a card per poster (implies the explanation): PATH.png or PATH.jpg "
                "is the file (with several posters: PATH-<poster name>.png, ...); a folder "
                "(existing, ending with /, or a name without extension) gets "
                "<poster name>.png per poster.",
            ),
        ] = None,
        verbose: Annotated[
            bool,
            typer.Option(
                "--verbose",
                help="With --explain: also the exact log-odds (base, each cue's "
                "contribution, the sum) and the totals by kind of cue.",
            ),
        ] = False,
        device: Annotated[Device, typer.Option("--device", help=DEVICE_HELP)] = Device.auto,
        cues: Annotated[
            int,
            typer.Option(
                "--cues", min=1, metavar="N", help="Cues shown per genre before 'other cues'."
            ),
        ] = 5,
        prior: PriorFile = None,
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
        max_pixels: Annotated[
            int,
            typer.Option(
                "--max-pixels",
                min=1,
                metavar="N",
                help="Largest poster read, width x height (checked before decoding, so a "
                "huge or malicious file is refused unread).",
            ),
        ] = DEFAULT_MAX_PIXELS,
    ) -> None:
        thr = parse_threshold(threshold)
        chosen = resolve_format(fmt.value if fmt is not None else None, as_json, out_file)
        if explain and chosen in FLAT_FORMATS:
            raise typer.BadParameter(
                f"--explain adds nested cues, which {chosen} cannot hold: use --format "
                "text, json or jsonl"
            )
        if top_k is not None and not explain and card is None:
            raise typer.BadParameter(
                "--top-k N chooses which genres --explain or --card explains: add --explain "
                "(or --card PATH)"
            )
        if verbose and (not explain or chosen != "text"):
            raise typer.BadParameter(
                "--verbose adds the log-odds to --explain's text: add --explain (JSON always "
                "carries them)"
            )
        if card is not None:
            try:
                card_paths(card, ["poster"])
            except ConfigError as exc:
                raise typer.BadParameter(exc.message) from None
        check_out_file(out_file)
        code = run(
            posters,
            explain=explain,
            top_k=top_k,
            threshold=thr,
            as_json=as_json,
            model=model,
            card=card,
            device=device.torch_name,
            cues=cues,
            prior=prior,
            fmt=chosen,
            out_file=out_file,
            verbose=verbose,
            at_least_one=at_least_one,
            max_pixels=max_pixels,
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
    verbose: bool = False,
    at_least_one: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
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
        analyzer = Analyzer.load(model, device=device, prior=prior, max_pixels=max_pixels)

    adapted = analyzer.bundle.card.get("adapted_prior") if prior is not None else None
    sink = ResultSink(
        fmt, out_file, list(analyzer.genres), explain=explain, cues=cues, verbose=verbose,
        prior={"file": str(prior), "shares": adapted} if adapted else None,
    )  # fmt: skip
    failed = len(missing)
    try:
        if adapted:
            sink.note(prior_note(analyzer.bundle.card, prior))
        for f in missing:
            sink.failure(f)
        results = analyzer.iter_analyze(
            todo,
            explain=explain or card is not None,
            threshold=threshold,
            top_k=top_k,
            details=card is not None,
            keep_image=card is not None,
            at_least_one=at_least_one,
        )
        with _progress(err, len(todo)) as advance:
            for i, result in enumerate(results):
                advance()
                if isinstance(result, Failure):
                    result = _cli_hint(result)
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


def _cli_hint(f: Failure) -> Failure:
    """A too-large poster's hint names the option that raises the limit here."""
    if f.kind != "too_large":
        return f
    import dataclasses

    return dataclasses.replace(
        f, hint="downscale the poster, or raise the limit with --max-pixels N if you trust it"
    )


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


def predicted_words(a: Analysis) -> str:
    """The predicted set, and why a genre under its threshold is in it (or none is)."""
    if not a.predicted:
        return "none (no genre reached its threshold)"
    text = ", ".join(a.predicted)
    below = a.predicted_below_threshold
    if below:
        # The rule fills the set up to the model's minimum: that is how many there are.
        n = len(a.predicted)
        rule = "one genre" if n == 1 else f"{n} genres"
        which = "" if below == a.predicted else f"{', '.join(below)} "
        whose = "its" if len(below) == 1 else "their"
        text += (
            f" ({which}below {whose} threshold: every poster gets at least {rule} unless "
            "--no-at-least-one)"
        )
    return text


def render_text(
    console: Any,
    a: Analysis,
    *,
    explain: bool,
    cues: int = 5,
    card_path: Path | None = None,
    verbose: bool = False,
) -> None:
    from rich.markup import escape

    name = a.path if a.path is not None else "poster"
    console.print(f"[bold]{escape(name)}[/bold]  [dim]{a.size_text}[/dim]")
    console.print(f"  predicted: [bold green]{escape(predicted_words(a))}[/bold green]")
    console.print(f"  {escape(probabilities_line(a))}")
    never = a.not_predicted_by_model
    if never:
        console.print(
            f"  {NOT_PREDICTED} (threshold above 100%): {escape(', '.join(never))}",
            highlight=False,
        )
    if explain:
        if not a.explanations:
            console.print("  nothing to explain: no genre predicted (--top-k N explains the N "
                          "most probable)")  # fmt: skip
        for e in a.explanations.values():
            _render_explanation(console, e, cues, a, verbose)
    if card_path is not None:
        console.print(f"  card: {escape(str(card_path))}")
    console.print()


def effect_word(effect: float) -> str:
    return "raises" if effect > 0 else "lowers" if effect < 0 else "no effect"


def explanation_rows(e: GenreExplanation, cues: int = 5) -> list[tuple[str, float, float]]:
    """(label, log-odds, effect on the probability) rows: the top cues, then other cues.

    The log-odds of the rows and ``e.base`` sum to ``e.logit``; each effect is what that
    row alone did to the probability (:meth:`GenreExplanation.effect`).
    """
    shown, other, n_other = e.top(cues)
    rows = [(c.text, c.contribution, e.effect(c.contribution)) for c in shown]
    if n_other:
        rows.append((f"other cues ({n_other} together)", other, e.effect(other)))
    return rows


def genre_status(e: GenreExplanation, a: Analysis) -> str:
    """ "threshold 28%", "threshold 26%; not predicted", ... for an explanation's header."""
    if e.threshold > 1.0:
        return NOT_PREDICTED
    status = f"threshold {_pct(e.threshold)}"
    if e.genre not in a.predicted:
        return f"{status}; not predicted"
    if e.probability < e.threshold:
        return f"{status}; predicted anyway, as every poster gets at least one genre"
    return status


def _render_explanation(
    console: Any, e: GenreExplanation, cues: int, a: Analysis, verbose: bool
) -> None:
    from rich.markup import escape
    from rich.table import Table

    title = f"  Why {escape(e.genre)}: {_pct(e.probability)} ({escape(genre_status(e, a))})"
    if verbose:
        title += f"; log-odds {e.logit:+.2f}"
    console.print()
    console.print(title, highlight=False)
    console.print(
        f"    [dim]a typical poster: {_pct(e.base_probability)}; each cue: the change in "
        "probability it makes[/dim]",
        highlight=False,
    )
    table = Table(box=None, show_header=False, padding=(0, 1), pad_edge=False)
    table.add_column(width=10)
    table.add_column(justify="right", width=9)
    table.add_column(ratio=1, overflow="fold")
    if verbose:
        table.add_column(justify="right", width=7)
        table.add_row("", "", "[dim]base (a typical poster)[/dim]", f"[dim]{e.base:+.2f}[/dim]")
    for label, value, effect in explanation_rows(e, cues):
        lumped = label.startswith("other cues")
        colour = "dim" if lumped else ("green" if effect > 0 else "red" if effect < 0 else "dim")
        cells = [
            f"    [{colour}]{effect_word(effect)}[/{colour}]",
            f"[{colour}]{points(effect)}[/{colour}]",
            escape(label),
        ]
        if verbose:
            cells.append(f"[{colour}]{value:+.2f}[/{colour}]")
        table.add_row(*cells)
    if verbose:
        table.add_row("", "", "= log-odds of " + escape(e.genre), f"[bold]{e.logit:+.2f}[/bold]")
    console.print(table)
    if verbose:
        from postergenre.cues import GROUP_TITLES

        groups = ", ".join(f"{GROUP_TITLES.get(g, g)} {v:+.2f}" for g, v in e.groups.items())
        console.print(f"    [dim]log-odds by kind of cue: {escape(groups)}[/dim]")
