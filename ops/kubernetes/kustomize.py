"""An overlay built as `kubectl kustomize` builds it, for the fields infra/kubernetes uses, so
the schemas can check what a cluster would receive without the kustomize binary.

Supported: resources (files and directories with a kustomization.yaml), namespace, images,
replicas, inline JSON 6902 patches (replace and add) and secretGenerator (from files; where the
operator's file is absent, a placeholder value). Any other field is refused, so an overlay
cannot use something this build would silently skip. Not done: the content-hash suffix of
generated Secrets (names and references stay as written).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import Any

import yaml

from ops.errors import ConfigError

SUPPORTED = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
    | {"secretGenerator"}
)
PLACEHOLDER = b"placeholder: the operator's file"
Reader = Callable[[str], str | None]  # path relative to infra/kubernetes -> text, or None


def build(directory: str, read: Reader) -> list[dict[str, Any]]:
    """The documents of the kustomization in `directory` (relative, POSIX)."""
    text = read(f"{directory}/kustomization.yaml")
    if text is None:
        raise ConfigError(f"{directory}: no kustomization.yaml")
    spec: dict[str, Any] = yaml.safe_load(text)
    unknown = sorted(set(spec) - SUPPORTED)
    if unknown:
        raise ConfigError(f"{directory}/kustomization.yaml: unsupported fields {unknown}")
    docs: list[dict[str, Any]] = []
    for resource in spec.get("resources", []):
        path = _join(directory, resource)
        if read(f"{path}/kustomization.yaml") is not None:
            docs += build(path, read)
            continue
        content = read(path)
        if content is None:
            raise ConfigError(f"{directory}: resource {resource} not found")
        docs += [d for d in yaml.safe_load_all(content) if d]
    for generator in spec.get("secretGenerator", []):
        docs.append(_secret(directory, generator, read))
    for doc in docs:
        _transform(doc, spec)
    return docs


def _transform(doc: dict[str, Any], spec: Mapping[str, Any]) -> None:
    """This kustomization's images, replicas, patches and namespace, applied to one doc."""
    _images(doc, spec.get("images", []))
    for item in spec.get("replicas", []):
        if doc["kind"] in {"Deployment", "StatefulSet"} and _name(doc) == item["name"]:
            doc["spec"]["replicas"] = item["count"]
    for patch in spec.get("patches", []):
        target = patch["target"]
        if doc["kind"] == target["kind"] and _name(doc) == target["name"]:
            for op in yaml.safe_load(patch["patch"]):
                _apply(doc, op)
    if "namespace" in spec and doc["kind"] != "Namespace":
        doc["metadata"]["namespace"] = spec["namespace"]


def _join(directory: str, relative: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(directory, relative).parts:
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _name(doc: Mapping[str, Any]) -> str:
    return str(doc["metadata"]["name"])


def _secret(directory: str, generator: Mapping[str, Any], read: Reader) -> dict[str, Any]:
    data = {}
    for entry in generator["files"]:
        key, _, path = entry.partition("=")
        text = read(_join(directory, path))
        raw = text.encode() if text is not None else PLACEHOLDER
        data[key] = base64.b64encode(raw).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": generator["name"]},
        "type": "Opaque",
        "data": data,
    }


def _images(doc: dict[str, Any], images: list[Mapping[str, Any]]) -> None:
    pod = (doc.get("spec") or {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        repository, _, tag = str(container["image"]).rpartition(":")
        for image in images:
            if repository == image["name"]:
                new_tag = image.get("newTag", tag)
                container["image"] = f"{image.get('newName', repository)}:{new_tag}"


def _apply(doc: dict[str, Any], op: Mapping[str, Any]) -> None:
    if op["op"] not in {"replace", "add"}:
        raise ConfigError(f"patch op {op['op']!r} is not supported")
    *parents, last = [p for p in str(op["path"]).split("/") if p]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node.insert(len(node) if last == "-" else int(last), op["value"])
    elif op["op"] == "replace" and last not in node:
        raise ConfigError(f"patch replaces {op['path']}, which does not exist")
    else:
        node[last] = op["value"]
