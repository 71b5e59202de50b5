"""Request bodies in, JSON responses out (shared by every handler module)."""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from aiohttp import web

from antrea.apiserver import errors, protobuf

JSON = dict[str, Any]


def json_response(
    body: Any, status: int = 200, *, warnings: list[str] | None = None
) -> web.Response:
    response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
    for text in warnings or ():
        response.headers.add("Warning", f"299 - {orjson.dumps(text).decode()}")
    return response


async def read_object(request: web.Request) -> JSON:
    raw = await request.read()
    ctype = request.content_type
    try:
        if "protobuf" in ctype:
            obj: Any = protobuf.decode(raw)
        elif "yaml" in ctype:
            obj = yaml.safe_load(raw)
        else:
            obj = orjson.loads(raw or b"null")
    except protobuf.ProtobufError as exc:
        raise errors.APIError(
            errors.status_body(code=415, reason="UnsupportedMediaType", message=str(exc))
        ) from None
    except (orjson.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding request body: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON object")
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return obj
