"""Readers of public datasets' files (MNIST's idx format), used by the built-in models and by `promptgen eval --data`.

Depends on nothing else in promptgen.
"""
