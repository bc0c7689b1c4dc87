"""Energies that any plugin can register: they depend only on the core protocols."""

from promptgen.energies.classifier import ClassifierEnergy, build_classifier_energy

__all__ = ["ClassifierEnergy", "build_classifier_energy"]
