"""Prompt folders: the manifest, loading a trained prompt, and prompts used as generators (chains)."""
