#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
#
# Checks Choria protocol v2 messages against Choria's published schemas,
# every layer of each: the transport, the secure request or reply in its
# base64 `data`, and the request or reply in the secure layer's base64
# `request` or `reply`. Each FILE holds one message, the transport JSON
# as sent. Exits 1 and names every violation on standard error when any
# layer of any message does not validate; prints one line per message
# checked otherwise.
#
# Usage: choria_v2_schema_check.py SCHEMA_DIR FILE...

import base64
import binascii
import json
import os
import sys

import jsonschema

P = "io.choria.protocol.v2."


def load(schema_dir, name):
    with open(os.path.join(schema_dir, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def validators(schema_dir):
    reply = load(schema_dir, "reply")
    # The published reply schema names the request's protocol; real
    # replies carry the reply's (see tests/data/schemas/protocol-v2/SOURCE).
    reply["properties"]["protocol"]["const"] = P + "reply"
    schemas = {
        "transport": load(schema_dir, "transport"),
        "secure_request": load(schema_dir, "secure_request"),
        "secure_reply": load(schema_dir, "secure_reply"),
        "request": load(schema_dir, "request"),
        "reply": reply,
    }
    out = {}
    for name, schema in schemas.items():
        jsonschema.Draft7Validator.check_schema(schema)
        out[name] = jsonschema.Draft7Validator(schema)
    return out


def decode_layer(text, what, problems):
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        problems.append(f"{what}: not JSON: {e}")
        return None


def b64(value, what, problems):
    if not isinstance(value, str):
        problems.append(f"{what}: not a string")
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        problems.append(f"{what}: not base64: {e}")
        return None


def check(v, name, doc, where, problems):
    for err in v[name].iter_errors(doc):
        path = "/".join(str(p) for p in err.absolute_path)
        problems.append(f"{where} ({name}.json) at /{path}: {err.message}")


def check_message(v, wire):
    problems = []
    transport = decode_layer(wire, "transport", problems)
    if transport is None:
        return problems, None
    check(v, "transport", transport, "transport", problems)
    secure_text = b64(transport.get("data"), "transport data", problems)
    if secure_text is None:
        return problems, None
    secure = decode_layer(secure_text, "secure layer", problems)
    if not isinstance(secure, dict):
        problems.append("secure layer: not an object")
        return problems, None
    kind = "request" if secure.get("protocol") == P + "secure_request" else "reply"
    check(v, "secure_" + kind, secure, "secure " + kind, problems)
    inner_text = b64(secure.get(kind), "secure " + kind + " " + kind, problems)
    if inner_text is None:
        return problems, kind
    inner = decode_layer(inner_text, kind, problems)
    if inner is None:
        return problems, kind
    check(v, kind, inner, kind, problems)
    if isinstance(inner, dict):
        b64(inner.get("message"), kind + " message", problems)
    return problems, kind


def main(argv):
    if len(argv) < 3:
        print("usage: choria_v2_schema_check.py SCHEMA_DIR FILE...", file=sys.stderr)
        return 2
    v = validators(argv[1])
    failed = False
    for path in argv[2:]:
        with open(path, encoding="utf-8") as f:
            wire = f.read()
        problems, kind = check_message(v, wire)
        for p in problems:
            print(f"{os.path.basename(path)}: {p}", file=sys.stderr)
        failed = failed or bool(problems)
        if not problems:
            print(f"{os.path.basename(path)}: {kind} ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
