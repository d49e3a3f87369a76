"""Plots of each experiment, drawn from its result.json alone (never the other way round)."""
