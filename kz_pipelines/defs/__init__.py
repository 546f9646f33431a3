"""Dagster wiring: the only package (with definitions.py) that imports dagster."""
