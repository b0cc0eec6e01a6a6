"""Deployment and operations tooling for the Code Learning Coach.

Every Invoke task, script in scripts/ and test calls the functions in this package; the
entry points stay thin so that what the tests prove is what the operators run.
"""
