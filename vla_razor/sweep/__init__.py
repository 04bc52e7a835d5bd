"""Sweeps of an experiment's runs on Ray (vla_razor/sweep/sweep.py)."""
