"""Registries read from data files: the upstream topics and the venues an arXiv comment can name."""
