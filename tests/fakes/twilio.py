#!/usr/bin/env python3
"""Twilio's Messages API, as far as an SMS sender uses it, on plain HTTP.

  POST /2010-04-01/Accounts/<sid>/Messages.json   (form: To, From, Body; HTTP basic auth)
      right account and token -> 201 {"sid": "SM…", "status": "queued", "to", "from", "body"}
      wrong credentials       -> 401 {"code": 20003, "message": "Authenticate"}
      To in --fail-to         -> 400 {"code": 21211, "message": "Invalid 'To' Phone Number"}
  GET /messages   -> 200 [every accepted message, oldest first] (for the tests)
  GET /release    -> 200 {} : answers the message held by --hold-nth (for the tests)

With --hold-nth N, the Nth accepted message is recorded at once (GET /messages lists it)
but answered only after GET /release: a send that is still under way.

Prints "listening <port>" once bound.
"""
import argparse
import base64
import json
import threading
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs

from jsonhttp import JsonHandler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--account", default="ACtest")
    p.add_argument("--token", default="secret-token")
    p.add_argument("--fail-to", action="append", default=[])
    p.add_argument("--hold-nth", type=int, default=0)
    args = p.parse_args()
    messages, lock = [], threading.Lock()
    released = threading.Event()

    class Handler(JsonHandler):
        log_prefix = "fake-twilio"

        def do_GET(self):
            if self.path == "/messages":
                with lock:
                    return self.send_json(200, list(messages))
            if self.path == "/release":
                released.set()
                return self.send_json(200, {})
            self.send_json(404, {"code": 20404, "message": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            expected = "Basic " + base64.b64encode(f"{args.account}:{args.token}".encode()).decode()
            if self.path != f"/2010-04-01/Accounts/{args.account}/Messages.json":
                return self.send_json(404, {"code": 20404, "message": "not found"})
            if self.headers.get("Authorization") != expected:
                return self.send_json(401, {"code": 20003, "message": "Authenticate"})
            if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
                return self.send_json(400, {"code": 21600, "message": "form body expected"})
            if form.get("To") in args.fail_to:
                return self.send_json(400, {"code": 21211, "message": "Invalid 'To' Phone Number"})
            with lock:
                messages.append(form)
                sid = f"SM{len(messages):032d}"
                held = len(messages) == args.hold_nth
            if held:
                released.wait()
            self.send_json(201, {"sid": sid, "status": "queued", "to": form.get("To"),
                                 "from": form.get("From"), "body": form.get("Body")})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
