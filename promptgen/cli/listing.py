"""``promptgen list`` and ``promptgen info``: what is installed, and what a prompt is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

#: Most images one command takes (-n); memory sets the real limit, checked once the image size is known.
from promptgen.cli.app import app, out_console, user_errors
from promptgen.core.errors import printable


@app.command("list")
@user_errors
def list_(
    name: Annotated[str | None, typer.Argument(help="Show one generator, energy or classifier: its options, defaults, ranges and an example")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Show installed plugins and what each registers; with NAME, one entry's options."""
    from promptgen.core.registry import get_registry

    reg = get_registry()
    if name is not None:
        _list_one(reg, name, as_json)
        return
    if as_json:
        rows = [
            {
                "plugin": p.name,
                "distribution": p.distribution,
                "version": p.version,
                "generators": p.generators,
                "energies": p.energies,
                "classifiers": p.classifiers,
                "error": p.error,
            }
            for p in reg.plugins
        ]
        out_console.print_json(json.dumps(rows))
        return
    # Every name and message below comes from a plugin: printable() keeps rich markup and terminal codes out.
    # Names are never wrapped (they are what users type); summaries fold, so the lists fit 80 columns.
    plugins = Table(title="plugins", show_lines=False)
    plugins.add_column("plugin", no_wrap=True)
    plugins.add_column("distribution", no_wrap=True)
    plugins.add_column("status", overflow="fold")
    for p in reg.plugins:
        status = f"[red]{printable(p.error)}[/red]" if p.error else "[green]ok[/green]"
        plugins.add_row(printable(p.name), printable(f"{p.distribution} {p.version}".strip()), status)
    out_console.print(plugins)
    kinds = (
        ("generators (--gen)", reg.generators, lambda e: e.summary),
        ("energies (--energy)", reg.energies, lambda e: f"{e.summary} (default weight {e.default_weight:g})"),
        ("attribute classifiers", reg.classifiers, lambda e: f"{e.role}: " + "; ".join(
            f"{a} ({'/'.join(map(str, labels))})" for a, labels in e.attributes.items()) + (f". {e.summary}" if e.summary else "")),
    )
    for title, entries, describe in kinds:
        if not entries:
            continue
        table = Table(title=title, show_lines=False)
        table.add_column("name", no_wrap=True, style="bold")
        table.add_column("summary", overflow="fold")
        for entry_name, entry in entries.items():
            table.add_row(printable(entry_name), printable(describe(entry)))
        out_console.print(table)
    out_console.print("Details of one: [bold]promptgen list NAME[/bold]")


def _list_one(reg, name: str, as_json: bool) -> None:
    """``promptgen list NAME``: each entry called NAME, with its options."""
    from promptgen.core.errors import unknown_name
    from promptgen.core.options import option_default, option_example, option_names, option_type

    found = [
        (kind, table[name])
        for kind, table in (("generator", reg.generators), ("energy", reg.energies), ("classifier", reg.classifiers))
        if name in table
    ]
    if not found:
        from promptgen.core.zoo import provider_of

        for kind in ("generator", "energy", "classifier"):
            if provider_of(kind, name) is not None:  # type: ignore[arg-type]
                raise reg.unknown(kind, name)
        raise unknown_name("generator, energy or classifier", name, [*reg.generators, *reg.energies, *reg.classifiers], "see `promptgen list`")
    described = []
    for kind, entry in found:
        model = entry.options
        options = [
            {
                "name": key,
                "takes": option_type(model, key),
                "default": option_default(model, key),
                "help": model.model_fields[field].description,
                "example": option_example(model, key),
            }
            for key, field in option_names(model).items()
        ]
        row: dict = {"name": name, "kind": kind, "plugin": reg.provider(name, kind), "summary": entry.summary, "options": options}
        if kind == "generator":
            row["example"] = f"--gen {entry.example or name}"
        elif kind == "energy":
            row |= {"example": f"--energy {entry.example or name}", "default_weight": entry.default_weight, "arguments": entry.arguments}
        else:
            row |= {"role": entry.role, "attributes": {a: list(map(str, v)) for a, v in entry.attributes.items()}}
        described.append(row)
    if as_json:
        out_console.print_json(json.dumps(described))
        return
    for row in described:
        t = Table(show_header=False, title=printable(f"{row['kind']} {name}"))
        t.add_column(style="bold", no_wrap=True)
        t.add_column(overflow="fold")
        t.add_row("plugin", printable(row["plugin"]))
        t.add_row("summary", printable(row["summary"] or "-"))
        if "example" in row:
            t.add_row("example", printable(row["example"]))
        if row.get("arguments"):
            t.add_row("arguments", printable(row["arguments"]))
        if "default_weight" in row:
            t.add_row("default weight", f"{row['default_weight']:g} (change it with @WEIGHT)")
        if "attributes" in row:
            t.add_row("role", row["role"])
            for attribute, labels in row["attributes"].items():
                t.add_row(printable(attribute), printable(", ".join(labels)))
        out_console.print(t)
        if not row["options"]:
            out_console.print("no options")
            continue
        opts = Table(title="options (NAME=VALUE)")
        opts.add_column("option", no_wrap=True, style="bold")
        opts.add_column("takes", overflow="fold")
        opts.add_column("default", overflow="fold")
        opts.add_column("help", overflow="fold")
        for o in row["options"]:
            takes = o["takes"] + (f", e.g. {o['example']}" if o["example"] else "")
            opts.add_row(printable(o["name"]), printable(takes), printable(o["default"] or "-"), printable(o["help"] or ""))
        out_console.print(opts)


@app.command()
@user_errors
def info(
    prompt: Annotated[Path, typer.Argument(help="Prompt folder")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole manifest as JSON")] = False,
) -> None:
    """Show a prompt's manifest: generator, energies and weights, flow, training summary (after checking its weights)."""
    from promptgen.artifacts.manifest import check_prompt

    m = check_prompt(prompt)
    if as_json:
        out_console.print_json(m.model_dump_json())
        return
    # Every string below comes from the manifest, which may be a stranger's: printable() it.
    t = Table(show_header=False, title=printable(f"prompt {prompt}"))
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    g = m.generator
    t.add_row("generator", printable(f"{g.spec}  (latent {g.latent_shape}, {g.resolution[0]}×{g.resolution[1]}, licence {g.licence})"))
    for e in m.energies:
        t.add_row("energy", printable(f"{e.spec}  weight {e.weight:g}"))
    for i, r in enumerate(m.lineage):
        found = Path(r.path).exists() or (r.relative is not None and (prompt / r.relative).exists())
        t.add_row(
            "lineage" if i == 0 else "",
            printable(
                f"{i + 1}. {r.path}{'' if found else '  [missing]'}  ({' + '.join(r.energies)} on {r.generator}; "
                f"created {r.created}; sha256 {r.weights_sha256[:12]})"
            ),
        )
    t.add_row("flow", f"{m.flow.kind}, {m.flow.transforms} layers, hidden {m.flow.hidden}")
    if m.conditions:
        text = ", ".join(f"{c.name} {c.low:g}:{c.high:g} ({c.distribution}, reference {c.reference:g})" for c in m.conditions)
        t.add_row("conditions", printable(text + "; sample with --cond or --sweep"))
    if m.mixture is not None:
        shares = sorted(zip(m.mixture.weights, m.mixture.labels, strict=True), reverse=True)
        shown = " · ".join(f"{lab} {w:.3f}" for w, lab in shares[:6]) + (" · …" if len(shares) > 6 else "")
        t.add_row("mixture", printable(f"{len(shares)} components over {m.mixture.attribute}: {shown}"))
    c = m.training.config
    t.add_row("training", printable(f"{c.steps} steps × batch {c.batch_size}×{c.accumulate}, lr {c.lr:g}, seed {c.seed}, {m.training.device}, {m.training.seconds:.1f} s"))
    t.add_row("final", printable(f"loss {m.training.final_loss:.3f}; " + ", ".join(f"{k} {v:.3f}" for k, v in m.training.final_terms.items())))
    if m.training.stopped_at is not None:
        t.add_row("until-met", f"stopped at step {m.training.stopped_at} of {c.steps}: every target met on two batches")
    if m.training.realism_factor > 1:
        t.add_row("guard", f"raised the realism weights to {m.training.realism_factor:g} times their own: junk rose")
    if m.training.kept_step is not None:
        t.add_row("guard", f"kept the flow of step {m.training.kept_step}: the last evaluation made more junk than the generator")
    from promptgen.composing.trials import describe as describe_trials
    from promptgen.composing.watch import verdict

    for line in describe_trials(m.trials):
        t.add_row("mode=auto", printable(line))
    if m.check is not None:
        met, lines = verdict(m.check)
        t.add_row("check", printable(("met: " if met else "NOT met: ") + "; ".join(lines) + f" ({m.check.n} samples)"))
        from promptgen.evaluation.closing import check_flags

        for flag in check_flags(m.check):
            t.add_row(f"warning ({flag.kind})", printable(flag.message))
    t.add_row("created", printable(f"{m.created} with " + ", ".join(f"{k} {v}" for k, v in m.versions.items())))
    out_console.print(t)
