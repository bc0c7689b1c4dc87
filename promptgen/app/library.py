"""What ``promptgen app`` does, without the web page: the prompts under one folder, their samples and evaluations.

Everything here works on a :class:`Library`, the folder the app serves. It never reads or writes a file outside
that folder (its own temporary files aside, see :class:`Library`):

- a prompt is named by its path relative to the folder (an absolute path is taken only if it lies inside);
  the name is checked before anything is opened, again once links are resolved, and for a chained prompt
  (``--gen prompt:PATH``) every ancestor must lie inside too;
- evaluations are cached inside the prompt's own folder, written atomically, under a name that holds the
  sha256 of the flow's weights (see :meth:`Library.evaluation`), so a retrained prompt is never shown an old one.

Mistakes are :class:`~promptgen.core.errors.PromptgenError` lines, which the page shows as they are.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptgen.core.errors import PromptgenError, one_line, printable

if TYPE_CHECKING:  # torch is imported where it is used: the app's first page needs none of it (issue 29)
    from torch import Tensor

#: Folders the list looks into at most (a huge tree is cut short, and says so).
MAX_FOLDERS = 20_000
#: Prompts kept loaded at once (each holds its generator).
LOADED = 4
#: Images one sampling request draws at most; the page's count slider stops here.
MAX_COUNT = 256
#: Values of a sweep at most (the CLI's --sweep takes up to 64; a page row fits fewer).
MAX_STEPS = 16
#: The evaluation cache: ``EVAL_CACHE.format(sha=..., n=..., seed=...)`` inside the prompt folder.
EVAL_CACHE = ".app-eval-{sha}-n{n}-seed{seed}.json"
#: A prompt folder's manifest, its ``format`` and the largest this promptgen reads (as
#: :mod:`promptgen.artifacts.manifest` has them: that module imports torch, which the first list must not wait for).
MANIFEST = "manifest.json"
FORMAT = "promptgen-prompt"
FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_DAMAGED = "the prompt is damaged, train it again"


@dataclass
class PromptRow:
    """One prompt folder found under the library's folder, as the list shows it."""

    name: str  #: the folder, relative to the library's folder
    generator: str = ""
    energies: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    seconds: float | None = None
    created: str = ""
    error: str | None = None  #: why the folder is broken (one line), None when it loads
    pending: bool = False  #: read from its manifest, its weights not checked yet (see :meth:`Library.scan`)

    @property
    def ok(self) -> bool:
        return self.error is None

    def cells(self) -> list[str]:
        """The row of the page's table."""
        return [
            self.name,
            self.generator,
            " + ".join(self.energies),
            ", ".join(self.conditions),
            "" if self.seconds is None else f"{self.seconds:.1f}",
            self.created,
            f"broken: {self.error}" if not self.ok else "checking its weights…" if self.pending else "ok",
        ]


COLUMNS = ["prompt", "generator", "energies", "conditions", "training (s)", "made", "status"]


@dataclass
class Pair:
    """The base generator's and the prompt's images on the same noise, (N, C, H, W) in [0, 1] on the CPU."""

    base: Tensor
    prompt: Tensor
    seed: int
    condition: dict[str, float]


class Library:
    """The prompts under ``root``, loaded on demand and kept (a few at a time).

    Args:
        root: the folder the app serves; it must exist.
        device: where to sample (``auto``, ``cpu``, ``cuda``...).
    """

    def __init__(self, root: str | Path, device: str = "auto") -> None:
        given = Path(root)
        try:
            real = given.resolve(strict=True)
        except FileNotFoundError:
            raise PromptgenError(
                f"folder {str(given)!r} does not exist; give the folder that holds your prompts "
                f"(made by `promptgen compose --out {given}/NAME`)"
            ) from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise PromptgenError(f"cannot use {str(given)!r}: {one_line(str(exc))}; give another folder") from None
        if not real.is_dir():
            raise PromptgenError(f"{str(given)!r} is a file; give the folder that holds your prompts")
        self.root = real
        self.shown = str(given)
        self.device = device
        self._loaded: OrderedDict[tuple[Path, str], Any] = OrderedDict()
        self._lock = threading.RLock()
        #: The list's checks (see :meth:`checked`): folder -> (its files' stamp, its manifest); one scan at a time.
        self._checks: dict[Path, tuple[tuple, Any]] = {}
        self._scan_lock = threading.Lock()

    # --- paths -------------------------------------------------------------------------------------------

    def inside(self, path: Path) -> bool:
        """Whether ``path`` lies in the library's folder, once made absolute and rid of ``..`` (links not followed)."""
        absolute = Path(os.path.normpath(path if path.is_absolute() else self.root / path))
        return absolute == self.root or absolute.is_relative_to(self.root)

    def folder(self, name: str | None) -> Path:
        """The resolved prompt folder ``name`` (relative to the library's folder); refuses anything outside it."""
        text = (name or "").strip()
        if not text:
            raise PromptgenError("no prompt chosen; pick one from the list")
        if "\x00" in text or not text.isprintable():
            raise PromptgenError(f"{printable(text)!r} is not a folder name; pick a prompt from the list")
        path = Path(text).expanduser() if text.startswith("~") else Path(text)
        outside = f"{printable(text)!r} is outside {self.shown!r}: the app reads only the prompts under the folder it serves"
        if not self.inside(path):
            raise PromptgenError(outside + "; pick one from the list")
        try:
            real = (path if path.is_absolute() else self.root / path).resolve(strict=True)
        except FileNotFoundError:
            raise PromptgenError(f"no folder {printable(text)!r} under {self.shown!r}; pick a prompt from the list") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise PromptgenError(f"cannot use {printable(text)!r}: {one_line(str(exc))}; pick a prompt from the list") from None
        if not real.is_relative_to(self.root):
            raise PromptgenError(outside + f" (it is a link to {str(real)!r}); copy the prompt into the folder")
        if not real.is_dir():
            raise PromptgenError(f"{printable(text)!r} is a file, not a prompt folder; pick a prompt from the list")
        return real

    def name_of(self, folder: Path) -> str:
        """``folder`` relative to the library's folder, as the list names it."""
        rel = folder.relative_to(self.root)
        return "." if rel == Path(".") else rel.as_posix()

    def check_chain(self, folder: Path) -> None:
        """Refuse a chained prompt one of whose ancestors would be read from outside the library's folder."""
        from promptgen.artifacts.chaining import NAME, places_of_parent, prompt_path
        from promptgen.artifacts.manifest import read_manifest
        from promptgen.core.errors import SpecError
        from promptgen.core.spec import parse_spec

        current, seen = folder, {folder}
        while True:
            manifest = read_manifest(current)
            try:
                spec = parse_spec(manifest.generator.spec)
                if spec.name != NAME:
                    return
                named = Path(prompt_path(spec))
            except SpecError:
                return  # loading says what is wrong with it
            if manifest.lineage and named == Path(manifest.lineage[0].path):
                places = places_of_parent(current, manifest.lineage[0])
            else:
                places = [named if named.is_absolute() else Path.cwd() / named]
            parent = None
            for place in places:
                if not self.inside(place):
                    if os.path.lexists(place):
                        break  # loading would read it
                    continue
                if (place / "manifest.json").is_file():
                    parent = place.resolve()
                    break
            if parent is None or not parent.is_relative_to(self.root):
                where = places[0]
                raise PromptgenError(
                    f"{self.name_of(folder)!r} was trained on the prompt {str(where)!r}, which is not under {self.shown!r}; "
                    "the app reads only the prompts under the folder it serves: move both prompts into it"
                )
            if parent in seen:
                return  # a loop: loading says so
            seen.add(parent)
            current = parent

    # --- the list ----------------------------------------------------------------------------------------

    def scan(self, weights: bool = True) -> list[PromptRow]:
        """Every prompt folder under the library's folder (one holding ``manifest.json``), sorted by name; a broken one
        with its one-line reason. Hidden folders and links to folders are not entered.

        With ``weights=False``, a prompt whose weights were not checked yet (see :meth:`checked`) is listed from its
        manifest read as plain JSON, ``pending``: quick, and without importing torch, what a page shows first, before
        the list with every manifest validated and every weight checked (issue 29)."""
        if not weights:
            return self._scan(weights=False)
        with self._scan_lock:  # one full scan at a time: the second finds the first's checks
            return self._scan()

    def _scan(self, weights: bool = True) -> list[PromptRow]:
        rows: list[PromptRow] = []
        visited = 0
        for top, dirs, files in os.walk(self.root, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            visited += 1
            if visited > MAX_FOLDERS:
                rows.append(PromptRow(name="…", error=f"more than {MAX_FOLDERS:,} folders under {self.shown!r}; serve a smaller folder"))
                break
            if MANIFEST not in files:
                continue
            folder = Path(top)
            row = PromptRow(name=self.name_of(folder))
            try:
                m = self.checked(folder) if weights else self.remembered(folder)
                if m is None:  # the first list: the manifest as plain JSON, checked after the page is up
                    _fill(row, **quick_manifest(folder))
                    row.pending = True
                else:
                    _fill(row, m.generator.spec, [(e.spec, e.weight) for e in m.energies],
                          [(c.name, c.low, c.high) for c in m.conditions], m.training.seconds, m.created)
                    self.check_chain(folder)
            except PromptgenError as exc:
                row.error = one_line(str(exc))
            except Exception as exc:  # noqa: BLE001 - one broken folder must not hide the others
                row.error = one_line(f"{type(exc).__name__}: {exc}")
            rows.append(row)
        return sorted(rows, key=lambda r: r.name)

    def remembered(self, folder: Path) -> Any:
        """The manifest :meth:`checked` remembers for ``folder``, if its files are still the same; else None."""
        stamp = _stamp(folder)
        seen = self._checks.get(folder)
        return seen[1] if stamp is not None and seen is not None and seen[0] == stamp else None

    def checked(self, folder: Path) -> Any:
        """``check_prompt(folder)``: its validated manifest, after loading its weights; remembered while the folder's
        files stay the same (name, inode, size, modification time), so that reading the list again, as each page opens,
        does not load every prompt's weights again. Sampling loads them anyway, and says what is wrong with them."""
        from promptgen.artifacts.manifest import check_prompt

        stamp = _stamp(folder)  # before the check: a file changed during it is checked again next time
        seen = self._checks.get(folder)
        if stamp is not None and seen is not None and seen[0] == stamp:
            return seen[1]
        manifest = check_prompt(folder)
        if stamp is not None:
            self._checks[folder] = (stamp, manifest)
        return manifest

    # --- loading and sampling ----------------------------------------------------------------------------

    def load(self, name: str | None) -> Any:
        """The :class:`~promptgen.artifacts.prompt.Prompt` in folder ``name``, loaded once while its weights stay the same."""
        from promptgen.artifacts.manifest import read_manifest
        from promptgen.artifacts.prompt import load_prompt
        from promptgen.core.device import resolve_device

        folder = self.folder(name)
        with self._lock:
            self.check_chain(folder)
            manifest = read_manifest(folder)
            key = (folder, self.weights_key(folder, manifest.weights_file))
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            prompt = load_prompt(folder)
            prompt.to(resolve_device(self.device))
            self._loaded[key] = prompt
            while len(self._loaded) > LOADED:
                self._loaded.popitem(last=False)
            return prompt

    @staticmethod
    def weights_key(folder: Path, weights_file: str) -> str:
        """The sha256 of the prompt's flow weights (what its cached evaluations are keyed by)."""
        from promptgen.artifacts.manifest import file_sha256

        try:
            return file_sha256(folder / weights_file)
        except OSError as exc:
            raise PromptgenError(f"cannot read {str(folder / weights_file)!r}: {exc.strerror}; the prompt is incomplete") from None

    def conditions(self, name: str | None) -> list[Any]:
        """The prompt's :class:`~promptgen.core.conditions.ConditionRange` list (empty for an unconditional prompt)."""
        return list(self.load(name).conditions)

    def sample(self, name: str | None, n: int, seed: int, condition: Mapping[str, float] | None = None) -> Pair:
        """``n`` images of the base generator and ``n`` of the prompt, on the same noise ε drawn from ``seed``.

        The prompt's are what ``promptgen sample PROMPT -n N --seed S [--cond ...]`` draws; the base's are its
        generator's images of the same ε, as ``promptgen eval`` compares them (at the same conditions, for a
        generator that reads them).
        """
        import warnings

        import torch

        from promptgen.core.conditions import ConditionWarning

        n, seed = _count(n), _seed(seed)
        prompt = self.load(name)
        values = self._values(prompt, condition)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConditionWarning)  # the sliders stay within the training range
            at = prompt.at(values) if values else prompt
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            dev = at.device
            eps = torch.randn((n, *at.latent_shape), generator=g).to(dev)
            images = at.decode(eps).clamp(0, 1).cpu()
            base = at.decode_latents(at.noise(eps), at.condition_input(n, dev)).clamp(0, 1).cpu()
        return Pair(base=base, prompt=images, seed=seed, condition=dict(at.condition))

    def sweep(self, name: str | None, rows: int, condition_name: str, steps: int, seed: int,
              condition: Mapping[str, float] | None = None) -> tuple[Tensor, list[float]]:
        """The same ``rows`` noises at ``steps`` values of one condition across its training range (the other
        conditions at ``condition``): (rows, steps, C, H, W), and the values."""
        from promptgen.artifacts.prompt import sweep_images

        rows, seed = _count(rows), _seed(seed)
        if not 2 <= int(steps) <= MAX_STEPS:
            raise PromptgenError(f"a sweep takes 2 to {MAX_STEPS} values (it was {steps})")
        prompt = self.load(name)
        trained = {c.name: c for c in prompt.conditions}
        if not trained:
            raise PromptgenError(f"{printable(str(name))!r} was trained without conditions: it has no sweep")
        if condition_name not in trained:
            raise PromptgenError(f"the prompt has no condition {printable(str(condition_name))!r}; it was trained with {', '.join(trained)}")
        c = trained[condition_name]
        values = [c.low + (c.high - c.low) * i / (int(steps) - 1) for i in range(int(steps))]
        others = {k: v for k, v in self._values(prompt, condition).items() if k != condition_name}
        grid = sweep_images(prompt, rows, condition_name, values, seed=seed, condition=others)
        return grid, values

    @staticmethod
    def _values(prompt: Any, condition: Mapping[str, float] | None) -> dict[str, float]:
        """The asked condition values, each clipped to its training range; names the prompt lacks are refused."""
        if not condition:
            return {}
        trained = {c.name: c for c in prompt.conditions}
        out = {}
        for k, v in condition.items():
            if k not in trained:
                raise PromptgenError(f"the prompt has no condition {printable(k)!r}; it was trained with {', '.join(trained) or 'none'}")
            out[k] = min(max(float(v), trained[k].low), trained[k].high)
        return out

    # --- evaluation ----------------------------------------------------------------------------------------

    def cache_path(self, name: str | None, n: int, seed: int) -> Path:
        """Where the evaluation of ``n`` samples from ``seed`` is cached: in the prompt's folder, keyed by its weights."""
        from promptgen.artifacts.manifest import read_manifest

        folder = self.folder(name)
        sha = self.weights_key(folder, read_manifest(folder).weights_file)
        return folder / EVAL_CACHE.format(sha=sha[:32], n=int(n), seed=int(seed))

    def evaluation(self, name: str | None, n: int, seed: int, progress: Callable[[float, str], None] | None = None) -> tuple[Any, bool]:
        """``promptgen eval``'s report of ``n`` samples a side from ``seed``: (report, whether it came from the cache).

        Computed once per weights, ``n`` and ``seed``, and kept beside the prompt's manifest (written atomically).
        """
        from promptgen.core.atomic import write_text_atomic
        from promptgen.evaluation.evaluate import evaluate_prompt
        from promptgen.evaluation.results import EvalReport

        if not 2 <= int(n) <= 100_000:
            raise PromptgenError(f"an evaluation takes 2 to 100,000 samples a side (it was {n})")
        seed = _seed(seed)
        path = self.cache_path(name, n, seed)
        if path.is_file() and not path.is_symlink():
            try:
                return EvalReport.model_validate_json(path.read_bytes()), True
            except Exception:  # noqa: BLE001,S110 - a damaged cache is computed again, and replaced
                pass
        prompt = self.load(name)
        if progress is not None:
            progress(0.05, f"judging {n} samples of the base and of the prompt")
        evaluation = evaluate_prompt(prompt, n=int(n), seed=seed, batch_size=min(500, int(n)), device=prompt.device)
        report = evaluation.report
        report.prompt_path = self.name_of(self.folder(name))
        write_text_atomic(path, report.model_dump_json(indent=2) + "\n")
        return report, False


def _stamp(folder: Path) -> tuple | None:
    """The folder's files (not its hidden ones, such as the evaluation caches), each with its inode, size and
    modification time; None when they cannot be read."""
    try:
        with os.scandir(folder) as entries:
            files = []
            for e in entries:
                if not e.name.startswith(".") and e.is_file():
                    st = e.stat()
                    files.append((e.name, st.st_ino, st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(files))


def quick_manifest(folder: Path) -> dict[str, Any]:
    """What the list shows of ``folder/manifest.json``, read as plain JSON (no pydantic, no torch): ``generator``,
    ``energies`` (spec, weight), ``conditions`` (name, low, high), ``seconds`` and ``created``. A file that is missing,
    a link out of the folder, too large, not JSON, or lacks one of these is a one-line :class:`PromptgenError`; the
    rest of it is validated by :meth:`Library.checked`, after the page is up."""
    path = folder / MANIFEST
    try:
        real = path.resolve(strict=True)
        if not real.is_relative_to(folder.resolve(strict=True)):
            raise PromptgenError(f"{str(path)!r} is a link to {str(real)!r}, outside the prompt folder; copy the file into the folder")
        info = real.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block or never end
            raise PromptgenError(f"{str(path)!r} is not a regular file; {_DAMAGED}")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise PromptgenError(f"{str(path)!r} is {info.st_size / 2**20:.0f} MB, far larger than a promptgen manifest "
                                 f"(at most {MAX_MANIFEST_BYTES // 2**20} MB); it is not a prompt manifest")
        with open(real, "rb") as fh:
            raw: Any = json.loads(fh.read(MAX_MANIFEST_BYTES + 1).decode("utf-8"))
    except FileNotFoundError:
        raise PromptgenError(f"{str(folder)!r} is not a prompt: it has no {MANIFEST}; give a folder made by `promptgen compose`") from None
    except UnicodeDecodeError:
        raise PromptgenError(f"{str(path)!r} is not UTF-8 text, so not a manifest; {_DAMAGED}") from None
    except RecursionError:
        raise PromptgenError(f"{str(path)!r} is nested too deeply to be a promptgen manifest; {_DAMAGED}") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with thousands of digits
        raise PromptgenError(f"{str(path)!r} is not valid JSON ({one_line(str(exc))[:120]}); {_DAMAGED}") from None
    except (OSError, RuntimeError) as exc:  # unreadable, or a loop of links
        raise PromptgenError(f"cannot read {str(path)!r}: {one_line(getattr(exc, 'strerror', None) or str(exc))}; "
                             "check the file and its permissions") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise PromptgenError(f"{str(path)!r} is not a promptgen manifest (no \"format\": \"{FORMAT}\")")
    version = raw.get("format_version", FORMAT_VERSION)
    if _number(version) and version > FORMAT_VERSION:
        raise PromptgenError(f"{str(folder)!r} is a newer prompt format; this promptgen reads up to format {FORMAT_VERSION}: "
                             "upgrade with `pip install -U promptgen-core`")

    def bad(where: str, what: str) -> PromptgenError:
        return PromptgenError(f"{str(path)!r} is invalid at {where}: {what}; {_DAMAGED}")

    generator = raw.get("generator")
    spec = generator.get("spec") if isinstance(generator, dict) else None
    if not isinstance(spec, str):
        raise bad("generator.spec", "a text field is missing")
    energies = raw.get("energies")
    if not isinstance(energies, list):
        raise bad("energies", "a list is missing")
    pairs = []
    for i, e in enumerate(energies):
        e_spec, weight = (e.get("spec"), e.get("weight")) if isinstance(e, dict) else (None, None)
        if not isinstance(e_spec, str) or not _number(weight):
            raise bad(f"energies.{i}", "an energy needs a spec and a finite weight")
        pairs.append((e_spec, float(weight)))
    conditions = raw.get("conditions", [])
    if not isinstance(conditions, list):
        raise bad("conditions", "not a list")
    ranges = []
    for i, c in enumerate(conditions):
        name, low, high = (c.get("name"), c.get("low"), c.get("high")) if isinstance(c, dict) else (None, None, None)
        if not isinstance(name, str) or not _number(low) or not _number(high):
            raise bad(f"conditions.{i}", "a condition needs a name, a low and a high")
        ranges.append((name, float(low), float(high)))
    training = raw.get("training")
    seconds = training.get("seconds") if isinstance(training, dict) else None
    if not _number(seconds):
        raise bad("training.seconds", "a number is missing")
    created = raw.get("created", "")
    if not isinstance(created, str):
        raise bad("created", "not a time")
    return {"generator": spec, "energies": pairs, "conditions": ranges, "seconds": float(seconds), "created": created}


def _number(value: Any) -> bool:
    """Whether ``value`` is a finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fill(row: PromptRow, generator: str, energies: list[tuple[str, float]], conditions: list[tuple[str, float, float]],
          seconds: float, created: str) -> None:
    """Set the row's cells from its manifest (validated or read as plain JSON: shown the same)."""
    row.generator = printable(generator)
    row.energies = [_weighted(spec, weight) for spec, weight in energies]
    row.conditions = [printable(f"{name} {low:g}:{high:g}") for name, low, high in conditions]
    row.seconds = seconds
    row.created = _when(created)


def _count(n: Any) -> int:
    try:
        value = int(n)
    except (TypeError, ValueError):
        raise PromptgenError(f"the count must be a whole number (it was {printable(str(n))!r})") from None
    if not 1 <= value <= MAX_COUNT:
        raise PromptgenError(f"the count must be from 1 to {MAX_COUNT} (it was {value})")
    return value


def _seed(seed: Any) -> int:
    from promptgen.training.config import MAX_SEED, MIN_SEED

    try:
        value = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise PromptgenError(f"the seed must be a whole number (it was {printable(str(seed))!r})") from None
    if not MIN_SEED <= value <= MAX_SEED:
        raise PromptgenError(f"the seed must be from {MIN_SEED} to {MAX_SEED} (it was {value})")
    return value


def _weighted(spec: str, weight: float) -> str:
    """An energy as ``SPEC@WEIGHT`` (its weight once, whether or not the spec as typed gave it)."""
    from promptgen.core.spec import parse_spec

    try:
        typed = parse_spec(spec).weight is not None
    except PromptgenError:
        typed = False
    return printable(spec) if typed else printable(f"{spec}@{weight:g}")


def _when(created: str) -> str:
    """An ISO time as ``YYYY-MM-DD HH:MM`` in UTC (as stored when it cannot be read)."""
    try:
        t = dt.datetime.fromisoformat(created)
    except ValueError:
        return printable(created)
    if t.tzinfo is not None:
        t = t.astimezone(dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M") + (" UTC" if t.tzinfo is not None else "")


def histograms(report: Any) -> list[tuple[bytes, str]]:
    """(PNG, caption) of each judged attribute's histogram, base beside prompt (as ``promptgen report`` draws them)."""
    from promptgen.evaluation.render import attribute_title
    from promptgen.evaluation.report import histogram_png

    return [(histogram_png(a), attribute_title(a)) for a in report.attributes if a.available and a.base is not None and a.prompt is not None]


def summary(report: Any) -> list[str]:
    """Lines about a report: the junk rates, each attribute's figures, the verdict."""
    lines = []
    base, prompt = report.base.junk_rate, report.prompt.junk_rate
    if base is None and prompt is None:
        lines.append("junk rate: no realism check for this generator")
    else:
        shown = [f"{side} {rate:.1%}" if rate is not None else f"{side} n/a" for side, rate in (("base", base), ("prompt", prompt))]
        lines.append(f"junk rate: {', '.join(shown)} ({report.realism or 'realism check'})")
    for a in report.attributes:
        if not a.available:
            lines.append(f"{a.attribute}: not judged ({a.reason})")
            continue
        parts = []
        for side in ("base", "prompt"):
            s = getattr(a, side)
            if s is None:
                continue
            figures = [f"KL {s.kl:.3f}" if s.kl is not None else "", f"asked {s.share:.1%}" if s.share is not None else "",
                       f"junk {s.junk:.1%}" if s.junk is not None else ""]
            parts.append(f"{side}: " + ", ".join(f for f in figures if f))
        lines.append(f"{a.attribute}: " + "; ".join(parts))
    lines.append(f"diversity: base {report.base.diversity:.3g}, prompt {report.prompt.diversity:.3g}")
    if report.verdict:
        lines.append(("target met: " if report.met else "not met: ") + "; ".join(report.verdict))
    return [printable(line) for line in lines]


def grid(images: Tensor, nrow: int | None = None) -> Any:
    """A PIL image of a grid of (N, C, H, W) images in [0, 1], small images drawn larger (as the report does)."""
    import io

    from PIL import Image

    from promptgen.evaluation.report import grid_png

    return Image.open(io.BytesIO(grid_png(images, nrow)))


def write_downloads(prompt: Any, pair: Pair, name: str, folder: Path) -> tuple[Path, Path]:
    """The prompt's grid as a labelled PNG (as ``promptgen sample`` draws it) and base and prompt images as ``.npz``
    (``images``: the prompt's, ``base``: the generator's on the same noise), in ``folder`` (a private temporary folder)."""
    import numpy as np

    from promptgen.artifacts.captions import grid_labels
    from promptgen.core.atomic import write_atomic
    from promptgen.core.images import auto_scale, grid_size, save_images

    stem = "-".join(part for part in name.replace("/", "-").split("-") if part) or "prompt"
    stem = f"{stem}-seed{pair.seed}" + "".join(f"-{k}{v:g}" for k, v in pair.condition.items())
    png, npz = folder / f"{stem}.png", folder / f"{stem}.npz"
    h, w = prompt.info.resolution
    _, width = grid_size(pair.prompt.shape[0], h, w, None)
    labels = grid_labels(prompt, pair.seed, title=name, condition=pair.condition or None)
    save_images(pair.prompt, png, labels=labels, scale=auto_scale(width))

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez_compressed(fh, images=pair.prompt.float().numpy(), base=pair.base.float().numpy(), seed=np.int64(pair.seed))

    write_atomic(npz, write)
    return png, npz


__all__ = ["COLUMNS", "Library", "Pair", "PromptRow", "grid", "histograms", "summary", "write_downloads"]
