"""Training a prompt: the flow, the energy-based model, the trainer, its checkpoints and torchrun support."""
