"""A running broker's topology, as a topology file or as RabbitMQ definitions JSON.

The broker's `GET /api/definitions` is the source, so this works against a
RabbitMQ node as well. One vhost is cut out of the full document (not read
from `/api/definitions/{vhost}`, whose items name no vhost) so the result
still says where each entity lives and applies back to the same place.
"""

from __future__ import annotations

import json
from typing import Any

from ..ctl import CtlError, ManagementClient
from .dump import dump_yaml
from .entities import SECTIONS

FORMATS = ("yaml", "definitions")
# What lives in one vhost. Users are global, and permissions name them, so a
# one-vhost export has neither: it is that vhost's routing, to apply elsewhere.
_VHOST_SECTIONS = ("parameters", "policies", "queues", "exchanges", "bindings")


def live_definitions(client: ManagementClient) -> dict[str, Any]:
    """The broker's whole definitions document."""
    doc = client.request("GET", "/api/definitions")
    if not isinstance(doc, dict):
        raise CtlError(f"{client.url}/api/definitions did not answer a definitions document")
    return doc


def only_vhost(doc: dict[str, Any], vhost: str) -> dict[str, Any]:
    """The part of a definitions document in one vhost: its vhost entry and its entities."""
    out = {k: v for k, v in doc.items() if k not in (*SECTIONS.values(), *_VHOST_SECTIONS)}
    out["vhosts"] = [v for v in doc.get("vhosts") or [] if v.get("name") == vhost]
    for key in _VHOST_SECTIONS:
        if key in doc:
            out[key] = [item for item in doc[key] or [] if item.get("vhost") == vhost]
    return out


def render(doc: dict[str, Any], fmt: str) -> str:
    """The document as canonical topology YAML, or as RabbitMQ definitions JSON."""
    if fmt == "definitions":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    return dump_yaml(doc)
