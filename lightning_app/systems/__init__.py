"""LightningModules: one base with the shared step, one thin subclass per variant (``registry`` names them).

This package imports nothing itself, so ``systems.checkpoints`` and ``systems.losses`` load without Lightning.
"""
