#!/usr/bin/env python3
"""A homeserver's federation API, as far as mxisd uses it, for faults Synapse cannot make.

Speaks HTTPS with the test CA's server certificate. Prints "listening <port>" once bound.

  GET /_matrix/federation/v1/openid/userinfo?access_token=T
      T = "user:<mxid>" -> 200 {"sub": mxid};  T = "hang" -> never answers in time;
      T = "error" -> 500;  anything else -> 401 M_UNKNOWN_TOKEN.
  POST|PUT /_matrix/federation/v1/3pid/onbind
      recorded (GET /recorded/onbind lists them); --onbind-post-status N answers POSTs
      with N instead (405: a server that has only PUT)
  GET /_matrix/key/v2/server
      --key-answer FILE   -> 200 with the file's JSON (the test signs it)
  GET /.well-known/matrix/server
      --well-known NAME   -> 200 {"m.server": NAME}
      --redirect URL      -> 302 to URL
      neither             -> 404
"""
import argparse
import json
import ssl
import time
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from jsonhttp import JsonHandler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--well-known")
    p.add_argument("--redirect")
    p.add_argument("--key-answer", help="a file served as /_matrix/key/v2/server")
    p.add_argument("--onbind-post-status", type=int, default=200,
                   help="the answer to a POSTed onbind (405: as a server with only PUT)")
    p.add_argument("--onbind-refuse", action="store_true",
                   help="answer every onbind 400 M_INVALID_PARAM (a final refusal)")
    args = p.parse_args()
    recorded = []

    class Handler(JsonHandler):
        log_prefix = "fake-hs"

        def onbind(self, method):
            if urlsplit(self.path).path != "/_matrix/federation/v1/3pid/onbind":
                return self.send_json(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if args.onbind_refuse:
                recorded.append({"method": method, "body": body, "refused": True})
                return self.send_json(400, {"errcode": "M_INVALID_PARAM", "error": "refused"})
            if method == "POST" and args.onbind_post_status != 200:
                return self.send_json(args.onbind_post_status, {"errcode": "M_UNRECOGNIZED", "error": "no POST"})
            recorded.append({"method": method, "body": body})
            self.send_json(200, {})

        def do_POST(self):
            self.onbind("POST")

        def do_PUT(self):
            self.onbind("PUT")

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == "/.well-known/matrix/server":
                if args.redirect:
                    self.send_response(302)
                    self.send_header("Location", args.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif args.well_known:
                    self.send_json(200, {"m.server": args.well_known})
                else:
                    self.send_json(404, {"errcode": "M_NOT_FOUND", "error": "no well-known"})
                return
            if url.path == "/recorded/onbind":
                return self.send_json(200, recorded)
            if url.path == "/_matrix/key/v2/server" and args.key_answer:
                with open(args.key_answer) as f:
                    return self.send_json(200, json.load(f))
            if url.path == "/_matrix/federation/v1/openid/userinfo":
                token = parse_qs(url.query).get("access_token", [""])[0]
                if token.startswith("user:"):
                    self.send_json(200, {"sub": token[len("user:"):]})
                elif token == "hang":
                    time.sleep(120)
                elif token == "error":
                    self.send_json(500, {"errcode": "M_UNKNOWN", "error": "boom"})
                else:
                    self.send_json(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token"})
                return
            self.send_json(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})

    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
