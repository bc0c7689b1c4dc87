"""Composing prompts from the page: a queue of ``promptgen compose`` runs, one at a time, each in its own process.

Each job is the command line a user would type (``promptgen compose --gen G --energy E ... --steps N --out
FOLDER/NAME``), run with the served folder as its working directory, so it writes a normal prompt folder and
fails with the CLI's own one-line error. Its progress and loss are read from the progress bar it prints.
A job submitted while another runs waits its turn (``queued``); none is refused for that.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from promptgen.app.library import Library
from promptgen.core.errors import PromptgenError, one_line, printable

#: Jobs the queue keeps (finished ones beyond this are forgotten, oldest first).
KEEP = 50
#: Most steps a job from the page takes.
MAX_STEPS = 100_000
#: The progress bar's line: ``training ━━━ 5/60 0:00:00 -:--:-- loss   80.608 ...``.
_PROGRESS = re.compile(r"training\b.*?\s(\d+)/(\d+)\s.*?\bloss\s+(-?[\d.]+(?:e[-+]?\d+)?|nan|inf)", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

JOB_COLUMNS = ["#", "prompt", "state", "step", "loss", "message"]


@dataclass
class Job:
    """One compose run asked from the page."""

    number: int
    name: str
    argv: list[str]
    state: str = "queued"  #: queued, running, done or failed
    step: int = 0
    total: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    message: str = ""
    seconds: float = 0.0

    def cells(self) -> list[str]:
        loss = f"{self.losses[-1][1]:.4g}" if self.losses else ""
        return [str(self.number), self.name, self.state, f"{self.step}/{self.total}" if self.total else "", loss, self.message]


def split_specs(text: str | None) -> list[str]:
    """Energy specs or conditions typed one a line (blank lines and ``#`` comments ignored)."""
    return [line.strip() for line in (text or "").splitlines() if line.strip() and not line.strip().startswith("#")]


class TrainingQueue:
    """Compose runs for the library's folder, one at a time, in the order they were asked."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.jobs: list[Job] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._process: subprocess.Popen[str] | None = None
        self._stopped = False
        self._worker = threading.Thread(target=self._run, name="promptgen-app-training", daemon=True)
        self._worker.start()
        #: Counts the jobs finished: the page reloads its list when it changes.
        self.finished = 0

    def submit(self, generator: str | None, energies: str | None, conditions: str | None, steps: float | None,
               name: str | None, check_samples: float | None = None) -> Job:
        """Check the form and queue a job; a mistake is one line (the CLI's, for a spec)."""
        from promptgen.core.spec import parse_spec

        gen = (generator or "").strip()
        if not gen:
            raise PromptgenError("give a generator spec, e.g. mnist")
        specs = split_specs(energies)
        if not specs:
            raise PromptgenError("give at least one energy spec, e.g. classifier:digit=3 (one a line; @WEIGHT sets its weight)")
        conds = split_specs(conditions)
        for spec in [gen, *specs]:
            parse_spec(spec)  # a malformed spec: the CLI's own one line, before anything is queued
        self._check_parent(gen)
        try:
            n = int(steps) if steps is not None else 0
        except (TypeError, ValueError, OverflowError):
            raise PromptgenError(f"steps must be a whole number (it was {printable(str(steps))!r})") from None
        if not 1 <= n <= MAX_STEPS:
            raise PromptgenError(f"steps must be from 1 to {MAX_STEPS:,} (it was {n})")
        out = self._out(name)
        argv = ["compose", "--gen", gen]
        for spec in specs:
            argv += ["--energy", spec]
        for cond in conds:
            argv += ["--cond", cond]
        argv += ["--steps", str(n), "--log", "none", "--out", out]
        if check_samples is not None:
            argv += ["--check-samples", str(int(check_samples))]
        with self._lock:
            busy = {j.name for j in self.jobs if j.state in ("queued", "running")}
            if out in busy:
                raise PromptgenError(f"{out!r} is already queued; give the new prompt another name")
            job = Job(number=len(self.jobs) + 1 if not self.jobs else self.jobs[-1].number + 1, name=out, argv=argv, total=n)
            ahead = len(busy)
            job.message = f"waits for {ahead} job{'s' if ahead != 1 else ''}" if ahead else "starting"
            self.jobs.append(job)
            self._forget()
            self._wake.notify()
        return job

    def _check_parent(self, generator: str) -> None:
        """A prompt trained on another prompt (``prompt:PATH``): that prompt must lie under the served folder (a
        relative PATH is taken from it, as the run's working directory is the served folder)."""
        from promptgen.artifacts.chaining import NAME, prompt_path
        from promptgen.core.spec import parse_spec

        spec = parse_spec(generator)
        if spec.name == NAME:
            path = prompt_path(spec)
            self.library.folder(path)  # refuses one outside, in one line
            self.library.check_chain(self.library.folder(path))

    def _out(self, name: str | None) -> str:
        """The new prompt's folder, relative to the library's folder; refuses one outside it or already there."""
        text = (name or "").strip().rstrip("/")
        if not text:
            raise PromptgenError("give the new prompt a name: its folder under the served folder, e.g. three")
        path = Path(text)
        if path.is_absolute() or not text.isprintable() or "\\" in text or any(p in ("..", ".") or p.startswith(".") for p in path.parts):
            raise PromptgenError(f"{printable(text)!r}: give a folder name under the served folder, e.g. three or digits/three")
        lib = self.library
        # Every folder on the way that exists must resolve inside (no link out of the served folder).
        current = lib.root
        for part in path.parts:
            current = current / part
            if os.path.lexists(current):
                real = current.resolve()
                if not real.is_relative_to(lib.root):
                    raise PromptgenError(f"{printable(text)!r} leads outside {lib.shown!r} (through a link); choose another name")
        if (lib.root / path).exists():
            raise PromptgenError(f"{printable(text)!r} already exists under {lib.shown!r}; choose a new name")
        return path.as_posix()

    def _forget(self) -> None:
        done = [j for j in self.jobs if j.state in ("done", "failed")]
        for j in done[: max(0, len(self.jobs) - KEEP)]:
            self.jobs.remove(j)

    def snapshot(self) -> list[Job]:
        """A copy of the jobs, oldest first."""
        with self._lock:
            return [Job(**{**j.__dict__, "losses": list(j.losses), "argv": list(j.argv)}) for j in self.jobs]

    def stop(self) -> None:
        """Stop the worker and the run in progress (when the app stops)."""
        with self._lock:
            self._stopped = True
            self._wake.notify()
            process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopped and not any(j.state == "queued" for j in self.jobs):
                    self._wake.wait()
                if self._stopped:
                    return
                job = next(j for j in self.jobs if j.state == "queued")
                job.state, job.message = "running", "training"
                for i, other in enumerate(j for j in self.jobs if j.state == "queued"):
                    other.message = f"waits for {i + 1} job{'s' if i else ''}"
            self._train(job)
            with self._lock:
                self.finished += 1

    def _train(self, job: Job) -> None:
        env = {**os.environ, "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "NO_COLOR": "1", "COLUMNS": "200",
               "PYTHONUNBUFFERED": "1"}
        started = time.monotonic()
        try:
            process = subprocess.Popen([sys.executable, "-m", "promptgen", *job.argv], cwd=self.library.root, env=env,
                                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                       errors="replace")
        except OSError as exc:
            with self._lock:
                job.state, job.message = "failed", f"cannot start promptgen compose: {exc.strerror or exc}"
            return
        with self._lock:
            self._process = process
        errors: list[str] = []
        assert process.stdout is not None
        for raw in process.stdout:
            line = _ANSI.sub("", raw).strip()
            m = _PROGRESS.search(line)
            if m:
                step, total, loss = int(m.group(1)), int(m.group(2)), float(m.group(3))
                with self._lock:
                    job.step, job.total = step, total
                    if step > 0 and (not job.losses or job.losses[-1][0] != step):
                        job.losses.append((step, loss))
            elif line.startswith("error:"):
                errors.append(one_line(line))
        code = process.wait()
        with self._lock:
            self._process = None
            job.seconds = time.monotonic() - started
            if code == 0:
                job.state, job.message = "done", f"saved to {job.name} in {job.seconds:.0f} s"
                job.step = job.total
            else:
                job.state = "failed"
                job.message = printable(errors[-1]) if errors else f"promptgen compose stopped with exit code {code}"


def loss_png(job: Job) -> bytes | None:
    """The job's loss curve as a PNG (None before its first step)."""
    if not job.losses:
        return None
    import io

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 2.6), dpi=100)
    ax = fig.add_subplot()
    steps, losses = zip(*job.losses, strict=True)
    ax.plot(steps, losses, color="#2f6db5", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_xlim(0, max(job.total, steps[-1]))
    ax.set_title(f"{job.name}: {job.state}, step {job.step}/{job.total}", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
