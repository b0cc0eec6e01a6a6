"""Kubernetes manifests of the production stack, generated from the compose model.

Owns infra/kubernetes (a kustomize base and the dev and prod overlays): `render` turns the
merged production compose model into plain YAML, `kustomize` builds an overlay the way
kustomize would (for the offline schema checks; no kustomize binary here). Imports core and
stack (the compose model through ops.stack.project, the service roles); nothing above them.
"""
