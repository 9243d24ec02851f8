"""The query parameters every list answer takes: sort, sort_reverse, columns, pagination.

As rabbit_mgmt_util: `sort` names a (dotted) field to sort by before the
default order; `columns=a,b.c` keeps only those fields; `page` (with
`page_size`, `name`, `use_regex`) turns the answer into a page object with
counts, and a bad page is a 400 `invalid_pagination_parameters`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import ApiError

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def dotted(item: Any, path: str, default: Any = 0) -> Any:
    value = item
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return default
        value = value[part]
    return value


def _sort_value(value: Any) -> tuple[int, Any]:
    """Erlang's term order, roughly: numbers < atoms (booleans, null) < strings < the rest."""
    if isinstance(value, bool) or value is None:
        return (1, str(value))
    if isinstance(value, int | float):
        return (0, value)
    if isinstance(value, str):
        return (2, value)
    return (3, repr(value))


def sort_items(items: list[dict[str, Any]], default_sort: Sequence[str], query: Mapping[str, str]) -> list:
    sort = query.get("sort")
    if sort == "":
        ordered = items  # an explicit empty sort: leave the order as it is
    else:
        keys = ([sort] if sort else []) + list(default_sort)
        ordered = sorted(items, key=lambda item: [_sort_value(dotted(item, k)) for k in keys])
    if query.get("sort_reverse") == "true":
        ordered = list(reversed(ordered))
    return ordered


def select_columns(value: Any, columns: list[list[str]] | None) -> Any:
    """Keep only the named (dotted) fields of an object, or of each object of a list."""
    if columns is None:
        return value
    if isinstance(value, list):
        return [select_columns(v, columns) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        wanted = [c for c in columns if c[0] == key]
        if not wanted:
            continue
        if any(len(c) == 1 for c in wanted):
            out[key] = item
        else:
            out[key] = select_columns(item, [c[1:] for c in wanted])
    return out


def parse_columns(query: Mapping[str, str]) -> list[list[str]] | None:
    text = query.get("columns")
    if text is None:
        return None
    return [c.split(".") for c in text.split(",") if c]


def _page_param(query: Mapping[str, str], key: str) -> int | None:
    text = query.get(key)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, "bad_request", "Pagination parameters are invalid") from None


def paginate(items: list[Any], query: Mapping[str, str]) -> Any:
    page = _page_param(query, "page")
    if page is None:
        return items
    size = _page_param(query, "page_size")
    if page <= 0 or (size is not None and not 0 < size <= MAX_PAGE_SIZE):
        raise ApiError(400, "invalid_pagination_parameters",
                       f"Invalid pagination parameters: page number {page}, page size "
                       f"{'undefined' if size is None else size}")  # fmt: skip
    size = size or DEFAULT_PAGE_SIZE
    filtered = items
    name = query.get("name")
    if name:
        if query.get("use_regex") == "true":
            try:
                pattern = re.compile(name, re.IGNORECASE)
            except re.error as exc:
                raise ApiError(400, "bad_request", f"invalid regex: {exc}") from None
            filtered = [i for i in items if pattern.search(str(dotted(i, "name", "")))]
        else:
            filtered = [i for i in items if name.lower() in str(dotted(i, "name", "")).lower()]
    start = (page - 1) * size
    if start > len(filtered) and filtered:
        raise ApiError(400, "page_out_of_range",
                       f"Page out of range, page: {page} page size: {size}, len: {len(filtered)}")  # fmt: skip
    chunk = filtered[start : start + size]
    return {
        "total_count": len(items),
        "item_count": len(chunk),
        "filtered_count": len(filtered),
        "page": page,
        "page_size": size,
        "page_count": (len(filtered) + size - 1) // size,
        "items": chunk,
    }


def list_answer(items: list[dict[str, Any]], query: Mapping[str, str],
                default_sort: Sequence[str] = ("vhost", "name")) -> Any:  # fmt: skip
    """A list answer after sorting, column selection and pagination."""
    columns = parse_columns(query)
    ordered = sort_items(items, default_sort, query)
    paged = paginate(ordered, query)
    if isinstance(paged, dict):
        paged["items"] = select_columns(paged["items"], columns)
        return paged
    return select_columns(paged, columns)
