"""The core: errors, specs, typed options, protocols and capabilities, plugin entries, hooks and the registry.

Nothing here imports from the layers above it (training, artifacts, sampling,
evaluation, the command line).
"""
