"""Simulated users (margin points, corrective clicks, scribbles); filled in by issue 3."""
