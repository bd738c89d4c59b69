"""Compiler: validated model to graph, plan and Maestro artefacts (pure until emit)."""
