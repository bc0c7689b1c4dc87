"""Sampling baselines that need no training: rejection and Langevin sampling of the energy-based model."""
