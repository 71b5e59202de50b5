"""Request bodies in, JSON responses out (shared by every handler module).

Bodies are read within `limits.MAX_REQUEST_BODY_BYTES` (413), decoded by their Content-Type
(JSON, YAML, protobuf; anything else is 415 as kube-apiserver answers, an absent type means
JSON) and must come out as plain JSON within `limits.MAX_DEPTH` (400).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from antrea.testbed.apiserver import errors, protobuf, typecheck, yamlbody
from antrea.testbed.apiserver.limits import ShapeError, check_json, check_json_text, read_body

JSON = dict[str, Any]

JSON_MEDIA = "application/json"
YAML_MEDIA = "application/yaml"
PROTOBUF_MEDIA = "application/vnd.kubernetes.protobuf"
BODY_MEDIA_TYPES = (JSON_MEDIA, YAML_MEDIA, PROTOBUF_MEDIA)
# Request key: (kind, version, typecheck model) a body is decoded as (review resources).
DECODE_AS = web.RequestKey("antrea.decode_as", tuple[str, str, str | None])


def json_response(
    body: Any, status: int = 200, *, warnings: list[str] | None = None
) -> web.Response:
    response = web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
    for text in warnings or ():
        response.headers.add("Warning", f"299 - {orjson.dumps(text).decode()}")
    return response


def media_type(request: web.Request) -> str:
    """The request's media type without parameters; JSON when the header is absent."""
    header = request.headers.get("Content-Type", "")
    media = header.split(";", 1)[0].strip().lower()
    return media or JSON_MEDIA


def unsupported_media_type(accepted: tuple[str, ...]) -> errors.APIError:
    return errors.APIError(
        errors.status_body(
            code=415,
            reason="UnsupportedMediaType",
            message="the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(accepted)}",
        )
    )


def decode_json(raw: bytes, what: str = "request body") -> Any:
    """Plain JSON from ``raw`` (400 if malformed, too deep or not JSON-representable)."""
    try:
        value = orjson.loads(raw)
        check_json_text(raw)
    except (orjson.JSONDecodeError, ShapeError) as exc:
        raise errors.bad_request(f"error decoding {what}: {exc}") from None
    return value


def decode_yaml(raw: bytes, what: str = "request body") -> Any:
    try:
        return yamlbody.load(raw)
    except yamlbody.YAMLRefused as exc:
        raise errors.bad_request(f"error decoding {what}: {exc}") from None


async def read_value(request: web.Request, *, optional: bool = False) -> Any:
    """The decoded body (None when empty). An ``optional`` body (DeleteOptions) may come
    with any Content-Type when it is empty, as upstream only negotiates a body it has."""
    media = media_type(request)
    if media not in BODY_MEDIA_TYPES and not optional:
        raise unsupported_media_type(BODY_MEDIA_TYPES)
    raw = await read_body(request)
    if not raw.strip():
        return None
    if media not in BODY_MEDIA_TYPES:
        raise unsupported_media_type(BODY_MEDIA_TYPES)
    if media == PROTOBUF_MEDIA:
        try:
            value: Any = protobuf.decode(raw)
            check_json(value)
        except protobuf.ProtobufError as exc:
            raise unsupported_media_type((JSON_MEDIA, YAML_MEDIA)) from exc
        except ShapeError as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from None
        return value
    if media == YAML_MEDIA:
        return decode_yaml(raw)
    return decode_json(raw)


async def read_object(request: web.Request) -> JSON:
    obj = await read_value(request)
    if not isinstance(obj, dict):
        raise errors.bad_request("the request body must be a JSON object")
    decode_as = request.get(DECODE_AS)
    if decode_as is not None and decode_as[2] is not None:
        kind, version, model = decode_as
        mismatches = typecheck.check(model, obj, prune=True).mismatches
        if mismatches:
            raise errors.bad_request(
                f'{kind} in version "{version}" cannot be handled as a {kind}: '
                f"{mismatches[0].message()}"
            )
    meta = obj.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    return obj
