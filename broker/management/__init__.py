"""The management HTTP API: RabbitMQ's paths, JSON shapes, status codes and auth by user tag.

`build_app(broker)` is served by the broker in its own event loop (see
broker/http.py). The modules, each with one job:

- app: the aiohttp application, the order of checks, JSON answers;
- routes: the paths and their handlers;
- auth: basic auth, and what each user tag may see and do;
- request: the request object handlers take, and their answers;
- topology, access, runtime, definitions: the handlers;
- views: broker objects as RabbitMQ's JSON;
- stats: message counts and their rates;
- bindings: binding listings and properties keys;
- operations: the changes (declare, delete, bind, publish, get, purge, close);
- listing: sort, columns and pagination of lists;
- convert: AMQP values and properties to and from JSON;
- errors: RabbitMQ's error bodies and status codes.
"""

from __future__ import annotations

from .app import build_app

__all__ = ["build_app"]
