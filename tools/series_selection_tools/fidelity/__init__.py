"""Conversion fidelity: compare volumes with reference conversions in world space."""
