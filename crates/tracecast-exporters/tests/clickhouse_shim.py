"""A thin ClickHouse HTTP interface in front of chdb (an in-process ClickHouse engine), for
tests/clickhouse.rs.

It speaks the parts of ClickHouse's HTTP protocol that tracecast uses
(https://clickhouse.com/docs/interfaces/http): GET /ping; GET/POST / with the SQL in the
`query` URL parameter and/or the body (the body follows the query, as ClickHouse does for
`INSERT ... FORMAT JSONEachRow`); `database` and settings as URL parameters; credentials in
X-ClickHouse-User/X-ClickHouse-Key, HTTP Basic or user/password parameters. Errors come back as
ClickHouse sends them: `Code: N. DB::Exception: ...` in the body, the code in
X-ClickHouse-Exception-Code and the HTTP status ClickHouse maps it to.

Every request is appended as a JSON line to --log (method, path, query parameters, headers) so
the Rust test can check what the exporter sent.

Usage: python clickhouse_shim.py --user U --password P --data DIR --log FILE
Prints `LISTENING <port>` once it accepts connections on 127.0.0.1.
"""

import argparse
import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session as chs

# URL parameters that the HTTP handler itself consumes; all others are settings.
HTTP_PARAMS = {
    "query", "database", "default_format", "user", "password", "wait_end_of_query",
    "buffer_size", "query_id", "session_id", "session_timeout", "session_check", "compress",
    "decompress", "quota_key", "add_http_cors_header",
}
# ClickHouse's HTTP status for an exception code (src/Server/HTTPHandler.cpp).
STATUS = {
    516: 401, 192: 401, 193: 401, 194: 401,
    497: 403, 164: 403,
    60: 404, 81: 404,
    62: 400, 27: 400, 26: 400, 6: 400, 117: 400, 53: 400, 115: 400, 16: 400, 47: 400,
}
FORMAT_RE = re.compile(r"\sFORMAT\s", re.IGNORECASE)


class Shim:
    def __init__(self, user, password, data, log):
        self.user = user
        self.password = password
        self.sess = chs.Session(data)
        self.lock = threading.Lock()
        self.log = log

    def record(self, entry):
        with self.lock, open(self.log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")


def with_settings(query, settings):
    if not settings:
        return query
    clause = " SETTINGS " + ", ".join(
        f"{k} = {v}" if re.fullmatch(r"-?\d+(\.\d+)?", v) else f"{k} = '{v}'"
        for k, v in settings
    )
    m = FORMAT_RE.search(query)
    if m:
        return query[: m.start()] + clause + query[m.start():]
    return query + clause


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    shim: Shim = None

    def log_message(self, fmt, *args):  # quiet
        pass

    def reply(self, status, body, code=None):
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-shim")
        if code is not None:
            self.send_header("X-ClickHouse-Exception-Code", str(code))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="ClickHouse server HTTP API"')
        self.end_headers()
        self.wfile.write(data)

    def fail(self, code, message):
        self.reply(STATUS.get(code, 500), f"Code: {code}. DB::Exception: {message}\n", code)

    def handle_any(self):
        url = urlsplit(self.path)
        params = parse_qsl(url.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8") if length else ""
        self.shim.record({
            "method": self.command,
            "path": url.path,
            "params": params,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body_bytes": len(body.encode("utf-8")),
        })
        if url.path == "/ping":
            return self.reply(200, "Ok.\n")

        p = dict(params)
        user = self.headers.get("X-ClickHouse-User") or p.get("user")
        password = self.headers.get("X-ClickHouse-Key") or p.get("password")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            u, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            user, password = u, pw
        user = user or "default"
        if user != self.shim.user or (password or "") != self.shim.password:
            return self.fail(
                516,
                f"{user}: Authentication failed: password is incorrect, or there is no user "
                "with such name. (AUTHENTICATION_FAILED)",
            )

        query = p.get("query")
        if query is None and not body:
            return self.reply(200, "Ok.\n")
        if self.command == "GET" and not query.lstrip().upper().startswith(("SELECT", "SHOW", "DESCRIBE", "EXISTS", "WITH")):
            return self.fail(164, "Cannot execute query in readonly mode. (READONLY)")
        settings = [(k, v) for k, v in params if k not in HTTP_PARAMS and not k.startswith("param_")]
        if query is None:
            sql = with_settings(body, settings)
        else:
            sql = with_settings(query, settings) + ("\n" + body if body else "")
        try:
            with self.shim.lock:
                db = p.get("database") or self.headers.get("X-ClickHouse-Database")
                if db:
                    self.shim.sess.query(f"USE `{db}`")
                res = self.shim.sess.query(sql, p.get("default_format", "TabSeparated"))
                if db:
                    self.shim.sess.query("USE default")
            out = res.bytes() if hasattr(res, "bytes") else bytes(res)
            return self.reply(200, out)
        except Exception as e:  # chdb raises ChdbError("Code: N. DB::Exception: ...")
            msg = str(e)
            m = re.search(r"Code: (\d+)\.", msg)
            code = int(m.group(1)) if m else 1001
            text = msg.split("DB::Exception: ", 1)[-1] if m else msg
            return self.fail(code, text.strip())

    do_GET = handle_any
    do_POST = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--user", default="default")
    ap.add_argument("--password", default="")
    ap.add_argument("--data", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    Handler.shim = Shim(a.user, a.password, a.data, a.log)
    Handler.shim.sess.query("CREATE DATABASE IF NOT EXISTS default")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"LISTENING {srv.server_address[1]}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
