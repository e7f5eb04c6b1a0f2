"""Pieces shared by every operator: errors, models, settings, logging and JSON I/O."""
