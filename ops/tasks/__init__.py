"""Invoke collections; tasks.py at the root assembles them. Each task is a thin shell over ops."""
