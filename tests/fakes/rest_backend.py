#!/usr/bin/env python3
"""An identity backend speaking mxisd's REST store wire format, on plain HTTP.

Knows erin (localpart id) by e-mail and phone, and her password "erinpw".
With --broken every answer is HTTP 500. Prints "listening <port>" once bound.
"""
import argparse
import json
from http.server import ThreadingHTTPServer

from jsonhttp import JsonHandler

BINDINGS = {
    ("email", "erin@example.org"): {"type": "localpart", "value": "erin"},
    ("msisdn", "15551230000"): {"type": "mxid", "value": "@erin:example.org"},
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--broken", action="store_true")
    args = p.parse_args()

    class Handler(JsonHandler):
        log_prefix = "fake-rest"

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if args.broken:
                return self.send_json(500, {"error": "broken on purpose"})
            base = "/_mxisd/backend/api/v1"
            if self.path == base + "/identity/single":
                q = body["lookup"]
                found = BINDINGS.get((q["medium"], q["address"]))
                return self.send_json(200, {"lookup": dict(q, id=found)} if found else {})
            if self.path == base + "/identity/bulk":
                out = [dict(q, id=BINDINGS[(q["medium"], q["address"])])
                       for q in body["lookup"] if (q["medium"], q["address"]) in BINDINGS]
                return self.send_json(200, {"lookup": out})
            if self.path == base + "/auth/login":
                a = body["auth"]
                ok = a["localpart"] == "erin" and a["password"] == "erinpw" and a["domain"] == "example.org"
                if not ok:
                    return self.send_json(200, {"auth": {"success": False}})
                return self.send_json(200, {"auth": {
                    "success": True,
                    "id": {"type": "localpart", "value": "erin"},
                    "profile": {"display_name": "Erin", "three_pids": [{"medium": "email", "address": "erin@example.org"}]},
                }})
            return self.send_json(404, {"errcode": "M_UNRECOGNIZED", "error": "unknown path"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
