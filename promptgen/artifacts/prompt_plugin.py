"""The ``prompt`` generator: a trained prompt folder used as a generator (``--gen prompt:PATH``).

A plugin of promptgen-core, registered by its ``prompts`` entry point through
the same hook as any third-party generator.
"""

from __future__ import annotations

from pathlib import Path

from promptgen.artifacts.chaining import NAME, PromptOptions, cached, prompt_path
from promptgen.artifacts.prompt import Prompt, load_prompt
from promptgen.core.entries import GeneratorEntry
from promptgen.core.errors import SpecError, one_line
from promptgen.core.hooks import hookimpl
from promptgen.core.registry import Registry
from promptgen.core.spec import Spec


def build_prompt_generator(spec: Spec, options: PromptOptions, registry: Registry) -> Prompt:
    """The prompt folder named by ``spec``, loaded as a generator (its latent is the flow's noise ε)."""
    text = prompt_path(spec)
    if text.startswith("hf://"):  # a prompt on the Hugging Face Hub (promptgen.artifacts.hub)
        return load_prompt(text, registry)
    try:
        folder = Path(text).expanduser()
    except RuntimeError as exc:  # ~user that does not exist
        raise SpecError(f"{spec.format()!r}: cannot use that prompt folder ({one_line(str(exc))}); give the folder made by `promptgen compose`") from None
    found = cached(folder)
    return found if found is not None else load_prompt(folder, registry)


@hookimpl
def promptgen_generators() -> list[GeneratorEntry]:
    return [
        GeneratorEntry(
            NAME,
            build_prompt_generator,
            summary="a trained prompt folder (or hf://OWNER/NAME on the Hugging Face Hub) as a generator: prompt:runs/three",
            options=PromptOptions,
            positional="path",
            example="prompt:runs/three",
        )
    ]
