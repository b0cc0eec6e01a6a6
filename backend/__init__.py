"""The HTTP edge of the Code Learning Coach (FastAPI)."""
