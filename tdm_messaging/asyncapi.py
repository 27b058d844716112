"""The AsyncAPI 3.0 document of the protocol, generated from the message models (a plain dict, no YAML needed)."""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from tdm_messaging import headers
from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS
from tdm_messaging.models import MAX_REPLY_TO_LENGTH, MESSAGE_TYPES, PROTOCOL_VERSION

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "message_schemas"]

ASYNCAPI_VERSION = "3.0.0"

_REF = "#/components/schemas/{model}"
_REPLY_TYPES = ("package_request", "accepted", "progress", "complete", "failed", "deleted")
_DESCRIPTIONS = {
    "package_request": "Build the archive of a docset. The server also puts a copy on the reply queue.",
    "accepted": "The packager took the request; text form `Accepted. 45 seconds`.",
    "progress": "Items packaged so far; text form `Progress: 4/10 (40%)`.",
    "complete": "The archive is ready; text form `Complete: <url>` then `Size: <bytes>`.",
    "failed": "The job failed; text form `Failed: <reason>` then `Retryable: yes|no`.",
    "delete_request": "Delete the delivered package of a docset; text form `Delete: <docset id>`.",
    "deleted": "The package was deleted; text form `Deleted: <docset id>`.",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def message_schemas() -> dict[str, dict[str, Any]]:
    """The JSON schema (draft 2020-12, as pydantic writes it) of every message, by class name."""
    _refs, top = models_json_schema(
        [(cls, "validation") for cls in MESSAGE_TYPES.values()],
        ref_template=_REF,
    )
    defs: dict[str, dict[str, Any]] = top["$defs"]
    return dict(sorted(defs.items()))


_DIGITS = {"type": "string", "pattern": "^[0-9]{1,19}$"}
_DATE_TIME = {"type": "string", "format": "date-time"}
_HEADER_VALUES: dict[str, dict[str, Any]] = {
    headers.TYPE: {"type": "string", "enum": sorted(MESSAGE_TYPES)},
    headers.PROTOCOL_VERSION: {"type": "string", "pattern": "^[0-9]{1,4}\\.[0-9]{1,4}$"},
    headers.DOCSET_ID: {"type": "string", "pattern": "^[A-Za-z0-9._~:@+-]{1,128}$"},
    headers.REQUEST_ID: {
        "type": "string",
        "pattern": "^$|^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    },
    headers.SEQUENCE: _DIGITS,
    headers.TIMESTAMP: _DATE_TIME,
    headers.REQUESTED_AT: _DATE_TIME,
    headers.FORMATS: {"type": "string", "pattern": "^([A-Za-z0-9_-]{1,32}(,[A-Za-z0-9_-]{1,32})*)?$"},
    headers.REPLY_TO: {"type": "string", "maxLength": MAX_REPLY_TO_LENGTH},
    headers.ATTEMPT: _DIGITS,
    headers.NEXT_SEQUENCE: _DIGITS,
    headers.DEAD_LETTER_REASON: {"type": "string"},
    headers.DEAD_LETTER_QUEUE: {"type": "string"},
    headers.EXPIRES_AT: _DIGITS,
    headers.READ_MARKER: {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"},
    headers.READ_MARKER_AT: _DIGITS,
    headers.DECLARE_PROBE: {"type": "string"},
    headers.TRACEPARENT: {"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"},
    headers.TRACESTATE: {"type": "string", "maxLength": 512},
}
"""The value of every header of the table (all header values are strings on the wire)."""
# Read markers and declare probes are not protocol messages: their headers get schemas of their own.
_MARKER_HEADERS = (headers.READ_MARKER, headers.READ_MARKER_AT)
_PROBE_HEADERS = (headers.DECLARE_PROBE,)
_EMPTY_BODY = {"type": "string", "maxLength": 0, "description": "An empty body."}


def _header_schema(names: tuple[str, ...], description: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    meaning = {row.name: row.meaning for row in headers.HEADERS}
    schema: dict[str, Any] = {
        "type": "object",
        "description": description,
        "properties": {name: {**_HEADER_VALUES[name], "description": meaning[name]} for name in names},
    }
    if required:
        schema["required"] = list(required)
    return schema


def _message_headers_schema() -> dict[str, Any]:
    special = set(_MARKER_HEADERS) | set(_PROBE_HEADERS)
    names = tuple(row.name for row in headers.HEADERS if row.name not in special)
    return _header_schema(
        names,
        "The tdm-* headers of a protocol message (docs/protocol.md § 3). Every sender of this library writes "
        "tdm-type, tdm-protocol-version, tdm-docset-id, tdm-request-id and tdm-sequence; a text/plain body "
        "takes from them what its lines cannot say; the others appear where their description says. Other "
        "headers (the broker's own) are not part of the protocol.",
    )


_NS = "{namespacePrefix}"
_NAMESPACE_PARAMETER = {
    "description": (
        "The deployment's namespace (docs/protocol.md § 2.3): empty (the default: no namespace), or a name of "
        "1 to 128 characters from A-Z a-z 0-9 . _ ~ : @ + - followed by '/', e.g. `staging/`. Every queue of "
        "a deployment carries the same prefix; `reply_to` in a package request already includes it."
    ),
    "default": "",
    "examples": ["", "staging/"],
}


def _queue_binding() -> dict[str, Any]:
    # No queue name: the channel's address is it (with the namespace prefix, when there is one).
    queue = {"durable": True, "exclusive": False, "autoDelete": False}
    return {"amqp": {"is": "queue", "queue": queue, "bindingVersion": "0.3.0"}}


def asyncapi_document() -> dict[str, Any]:
    """The protocol as an AsyncAPI 3.0 document.

    Channels: ``docsets/package``, ``docsets/delete``, ``package/{docsetId}`` (the replies)
    and ``docsets/dead-letter``; operations for the server's and the packager's side, with
    the package request's reply; message payloads are the models' JSON schemas.

    Returns:
        A JSON-compatible dict, the same on every call (dump it with sorted keys for a stable file).
    """
    schemas = message_schemas()
    class_of = {kind: cls.__name__ for kind, cls in MESSAGE_TYPES.items()}
    messages = {
        class_of[kind]: {
            "name": kind,
            "title": class_of[kind],
            "summary": _DESCRIPTIONS[kind],
            "contentType": "application/json",
            "headers": {"$ref": "#/components/schemas/Headers"},
            "payload": {"$ref": _REF.format(model=class_of[kind])},
        }
        for kind in MESSAGE_TYPES
    }
    messages["ReadMarker"] = {
        "name": "read_marker",
        "title": "ReadMarker",
        "summary": "Not a protocol message: a STOMP reader's end-of-read marker (docs/protocol.md § 6.2).",
        "description": (
            "An empty message a STOMP reader sends to the queue before it subscribes; it stops reading when its "
            "own marker comes back. A reader that meets another reader's marker must not decode or dead-letter "
            "it: if tdm-read-marker-at + 60000 ms is still ahead, it sends it back to the same queue with the "
            "same two headers and the time left as the message's time to live, then acknowledges it; otherwise "
            "it acknowledges it (drops it)."
        ),
        "headers": {"$ref": "#/components/schemas/ReadMarkerHeaders"},
        "payload": dict(_EMPTY_BODY),
    }
    messages["DeclareProbe"] = {
        "name": "declare_probe",
        "title": "DeclareProbe",
        "summary": "Not a protocol message: an empty message that declared a RabbitMQ queue; drop it.",
        "description": (
            "Sent with the queue's declare headers and a time to live of 0 to create a reply queue without "
            "subscribing. A reader that meets one acknowledges it and ignores it."
        ),
        "headers": {"$ref": "#/components/schemas/DeclareProbeHeaders"},
        "payload": dict(_EMPTY_BODY),
    }
    schemas["Headers"] = _message_headers_schema()
    schemas["ReadMarkerHeaders"] = _header_schema(
        _MARKER_HEADERS, "The headers that make a message a read marker.", required=_MARKER_HEADERS
    )
    schemas["DeclareProbeHeaders"] = _header_schema(
        _PROBE_HEADERS, "The header that makes a message a declare probe.", required=_PROBE_HEADERS
    )

    def refs(kinds: tuple[str, ...]) -> dict[str, Any]:
        return {_camel(kind): {"$ref": f"#/components/messages/{class_of[kind]}"} for kind in kinds}

    def namespaced() -> dict[str, Any]:  # a fresh dict per channel: shared ones become YAML anchors
        return {"namespacePrefix": copy.deepcopy(_NAMESPACE_PARAMETER)}

    channels: dict[str, Any] = {
        "packageRequests": {
            "address": _NS + PACKAGE_REQUESTS.name,
            "parameters": namespaced(),
            "title": "Package requests",
            "description": "Permanent, durable queue: the server asks the packager to build a docset's archive.",
            "messages": refs(("package_request",)),
            "bindings": _queue_binding(),
        },
        "deleteRequests": {
            "address": _NS + DELETE_REQUESTS.name,
            "parameters": namespaced(),
            "title": "Delete requests",
            "description": "Permanent, durable queue: the server asks the packager to delete a delivered package.",
            "messages": refs(("delete_request",)),
            "bindings": _queue_binding(),
        },
        "replies": {
            "address": _NS + "package/{docsetId}",
            "title": "Replies of one docset",
            "description": (
                "Per-docset reply queue, durable, collected by the broker after a time of disuse. "
                "STOMP spelling: ActiveMQ `/queue/package/5`, RabbitMQ `/queue/package%2F5`; AMQP queue `package/5` "
                "(inside namespace `staging`: `staging/package/5`, `/queue/staging%2Fpackage%2F5`). "
                "The server reads it only when the miner polls, folds it into one status and re-sends the "
                "compacted messages before acknowledging. A STOMP reader's read markers and declare probes pass "
                "through it too; they are not protocol messages."
            ),
            "parameters": {
                **namespaced(),
                "docsetId": {
                    "description": "1 to 128 characters from A-Z a-z 0-9 . _ ~ : @ + -",
                },
            },
            "messages": {
                **refs(_REPLY_TYPES),
                "readMarker": {"$ref": "#/components/messages/ReadMarker"},
                "declareProbe": {"$ref": "#/components/messages/DeclareProbe"},
            },
        },
        "deadLetter": {
            "address": _NS + DEAD_LETTER.name,
            "parameters": namespaced(),
            "title": "Dead letters",
            "description": (
                "Requests the packager could not decode or kept failing on, with header `tdm-dead-letter-reason`."
            ),
            "messages": refs(("package_request", "delete_request")),
            "bindings": _queue_binding(),
        },
    }

    def op(action: str, channel: str, kinds: tuple[str, ...], summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "channel": {"$ref": f"#/channels/{channel}"},
            "summary": summary,
            "messages": [{"$ref": f"#/channels/{channel}/messages/{_camel(kind)}"} for kind in kinds],
        }

    package_reply = {
        "address": {
            "location": "$message.payload#/reply_to",
            "description": (
                "Reply to exactly the queue `reply_to` names: the reply queue's full name, `package/<docset id>`, "
                "or `<namespace>/package/<docset id>` when the request came through a namespace (the namespace "
                "of the queue it was read from). Over STOMP, spell that name as docs/protocol.md § 2.1 says."
            ),
        },
        "channel": {"$ref": "#/channels/replies"},
        "messages": [
            {"$ref": f"#/channels/replies/messages/{_camel(kind)}"}
            for kind in ("accepted", "progress", "complete", "failed")
        ],
    }
    operations: dict[str, Any] = {
        "requestPackage": {
            **op("send", "packageRequests", ("package_request",), "Server: ask for a docset's archive."),
            "reply": copy.deepcopy(package_reply),
        },
        "handlePackageRequest": {
            **op("receive", "packageRequests", ("package_request",), "Packager: build the archive, then reply."),
            "reply": package_reply,
        },
        "requestDelete": op("send", "deleteRequests", ("delete_request",), "Server: ask to delete a package."),
        "handleDeleteRequest": op(
            "receive", "deleteRequests", ("delete_request",), "Packager: delete the package, reply `deleted`."
        ),
        "sendReply": op("send", "replies", _REPLY_TYPES[1:], "Packager: report on a request."),
        "readReplies": op(
            "receive", "replies", _REPLY_TYPES, "Server, on a poll: read, fold, re-send the compacted replies, ack."
        ),
        "deadLetter": op(
            "send", "deadLetter", ("package_request", "delete_request"), "Packager: park a poison request."
        ),
    }
    # A reader meets markers and probes too (not protocol messages: docs/protocol.md § 6.2).
    operations["readReplies"]["messages"] += [
        {"$ref": "#/channels/replies/messages/readMarker"},
        {"$ref": "#/channels/replies/messages/declareProbe"},
    ]
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "TDM docset packaging protocol",
            "version": PROTOCOL_VERSION,
            "description": (
                "Messages between a text-and-data-mining API server and a packager worker that builds "
                "docset archives, over a message broker (STOMP, AMQP, Redis, SQLite). The specification "
                "is docs/protocol.md; this document is generated by `tdm-messaging asyncapi`."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
