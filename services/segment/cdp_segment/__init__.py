"""Segment service: audiences and their live membership."""
