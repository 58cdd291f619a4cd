"""SHAPER: jet-shape observables by optimal transport."""
