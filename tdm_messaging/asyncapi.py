"""The AsyncAPI 3.0 document of the protocol, generated from the message models (a plain dict, no YAML needed)."""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from tdm_messaging.destinations import DEAD_LETTER, DELETE_REQUESTS, PACKAGE_REQUESTS
from tdm_messaging.models import MESSAGE_TYPES, PROTOCOL_VERSION
from tdm_messaging.wire_text import (
    HEADER_DOCSET_ID,
    HEADER_PROTOCOL_VERSION,
    HEADER_REQUEST_ID,
    HEADER_SEQUENCE,
    HEADER_TIMESTAMP,
    HEADER_TYPE,
)

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


def _headers_schema() -> dict[str, Any]:
    names = (HEADER_TYPE, HEADER_PROTOCOL_VERSION, HEADER_DOCSET_ID, HEADER_REQUEST_ID, HEADER_SEQUENCE)
    properties: dict[str, Any] = {name: {"type": "string"} for name in names}
    properties[HEADER_TIMESTAMP] = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "description": "Written by every sender of this library; a text/plain body takes from them what it cannot say.",
        "properties": properties,
    }


def _queue_binding(address: str) -> dict[str, Any]:
    queue = {"name": address, "durable": True, "exclusive": False, "autoDelete": False}
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
    schemas["Headers"] = _headers_schema()

    def refs(kinds: tuple[str, ...]) -> dict[str, Any]:
        return {_camel(kind): {"$ref": f"#/components/messages/{class_of[kind]}"} for kind in kinds}

    channels: dict[str, Any] = {
        "packageRequests": {
            "address": PACKAGE_REQUESTS.name,
            "title": "Package requests",
            "description": "Permanent, durable queue: the server asks the packager to build a docset's archive.",
            "messages": refs(("package_request",)),
            "bindings": _queue_binding(PACKAGE_REQUESTS.name),
        },
        "deleteRequests": {
            "address": DELETE_REQUESTS.name,
            "title": "Delete requests",
            "description": "Permanent, durable queue: the server asks the packager to delete a delivered package.",
            "messages": refs(("delete_request",)),
            "bindings": _queue_binding(DELETE_REQUESTS.name),
        },
        "replies": {
            "address": "package/{docsetId}",
            "title": "Replies of one docset",
            "description": (
                "Per-docset reply queue, durable, collected by the broker after a time of disuse. "
                "STOMP spelling: ActiveMQ `/queue/package/5`, RabbitMQ `/queue/package%2F5`; AMQP queue `package/5`. "
                "The server reads it only when the miner polls, folds it into one status and re-sends the "
                "compacted messages before acknowledging."
            ),
            "parameters": {
                "docsetId": {
                    "description": "1 to 128 characters from A-Z a-z 0-9 . _ ~ : @ + -",
                }
            },
            "messages": refs(_REPLY_TYPES),
        },
        "deadLetter": {
            "address": DEAD_LETTER.name,
            "title": "Dead letters",
            "description": (
                "Requests the packager could not decode or kept failing on, with header `tdm-dead-letter-reason`."
            ),
            "messages": refs(("package_request", "delete_request")),
            "bindings": _queue_binding(DEAD_LETTER.name),
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
            "description": "The reply queue named in the request, `package/<docset id>`.",
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
            "reply": package_reply,
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
