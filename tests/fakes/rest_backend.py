#!/usr/bin/env python3
"""An identity backend speaking mxisd's REST store wire format, on plain HTTP.

Knows erin (localpart id) by e-mail and phone, and her password "erinpw".
With --broken every answer is HTTP 500. Prints "listening <port>" once bound.
"""
import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BINDINGS = {
    ("email", "erin@example.org"): {"type": "localpart", "value": "erin"},
    ("msisdn", "15551230000"): {"type": "mxid", "value": "@erin:example.org"},
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--broken", action="store_true")
    args = p.parse_args()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("fake-rest: " + (fmt % a) + "\n")

        def reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if args.broken:
                return self.reply(500, {"error": "broken on purpose"})
            base = "/_mxisd/backend/api/v1"
            if self.path == base + "/identity/single":
                q = body["lookup"]
                found = BINDINGS.get((q["medium"], q["address"]))
                return self.reply(200, {"lookup": dict(q, id=found)} if found else {})
            if self.path == base + "/identity/bulk":
                out = [dict(q, id=BINDINGS[(q["medium"], q["address"])])
                       for q in body["lookup"] if (q["medium"], q["address"]) in BINDINGS]
                return self.reply(200, {"lookup": out})
            if self.path == base + "/auth/login":
                a = body["auth"]
                ok = a["localpart"] == "erin" and a["password"] == "erinpw" and a["domain"] == "example.org"
                if not ok:
                    return self.reply(200, {"auth": {"success": False}})
                return self.reply(200, {"auth": {
                    "success": True,
                    "id": {"type": "localpart", "value": "erin"},
                    "profile": {"display_name": "Erin", "three_pids": [{"medium": "email", "address": "erin@example.org"}]},
                }})
            return self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "unknown path"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
