"""TLS and SASL/SCRAM-SHA-256 in front of a plaintext Kafka-protocol broker, for tests.

tansu 0.6.0 offers neither (its SASL mechanisms registry is built empty, and its `--cert` is not wired to
a TLS listener), so this front does what a secured Kafka listener does before a client may speak to it:
a TLS handshake with the test's certificate, then SaslHandshake and SaslAuthenticate (RFC 5802/7677
SCRAM-SHA-256 against one user's password). ApiVersions is answered by the broker, as a secured listener
answers it before authentication. Anything else before authentication closes the connection; once
authenticated the bytes go both ways unchanged.

Usage: secure_front.py LISTEN_PORT UPSTREAM_HOST:PORT CERT KEY USER PASSWORD
"""

import base64
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys
import threading

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58
MECHANISM = "SCRAM-SHA-256"


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_frame(sock):
    (size,) = struct.unpack(">i", read_exact(sock, 4))
    return read_exact(sock, size)


def send_frame(sock, body):
    sock.sendall(struct.pack(">i", len(body)) + body)


def h(key, msg):
    return hmac.new(key, msg, hashlib.sha256).digest()


class Scram:
    """The server side of SCRAM-SHA-256 for one user."""

    def __init__(self, user, password):
        self.user = user
        self.salt = os.urandom(16)
        self.iterations = 4096
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), self.salt, self.iterations)
        self.stored_key = hashlib.sha256(h(salted, b"Client Key")).digest()
        self.server_key = h(salted, b"Server Key")

    def first(self, client_first):
        bare = client_first.split(",", 2)[2]
        attrs = dict(a.split("=", 1) for a in bare.split(","))
        self.bare, self.user_ok = bare, attrs.get("n") == self.user
        self.nonce = attrs["r"] + base64.b64encode(os.urandom(18)).decode()
        salt = base64.b64encode(self.salt).decode()
        self.server_first = f"r={self.nonce},s={salt},i={self.iterations}"
        return self.server_first

    def final(self, client_final):
        without_proof, proof = client_final.rsplit(",p=", 1)
        message = f"{self.bare},{self.server_first},{without_proof}".encode()
        signature = h(self.stored_key, message)
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature))
        nonce_ok = f",r={self.nonce}" in f",{without_proof}"
        if not (self.user_ok and nonce_ok and hashlib.sha256(client_key).digest() == self.stored_key):
            return None
        return "v=" + base64.b64encode(h(self.server_key, message)).decode()


def header(req):
    """api key, version, correlation id, and where the body starts (request header v1)."""
    api_key, version, correlation = struct.unpack(">hhi", req[:8])
    (client_id,) = struct.unpack(">h", req[8:10])
    return api_key, version, correlation, 10 + max(client_id, 0)


def authenticate(conn, up, scram):
    """Runs the client's exchange up to a successful authentication; False to close."""
    step = 0
    while True:
        req = read_frame(conn)
        api_key, version, correlation, at = header(req)
        if api_key == API_VERSIONS:
            send_frame(up, req)
            send_frame(conn, read_frame(up))
        elif api_key == SASL_HANDSHAKE:
            (n,) = struct.unpack(">h", req[at : at + 2])
            asked = req[at + 2 : at + 2 + n].decode()
            error = 0 if asked == MECHANISM else UNSUPPORTED_SASL_MECHANISM
            name = MECHANISM.encode()
            body = struct.pack(">ihih", correlation, error, 1, len(name)) + name
            send_frame(conn, body)
            if error:
                return False
        elif api_key == SASL_AUTHENTICATE and version <= 1:
            (n,) = struct.unpack(">i", req[at : at + 4])
            token = req[at + 4 : at + 4 + n].decode()
            answer = scram.first(token) if step == 0 else scram.final(token)
            step += 1
            if answer is None:
                message = b"authentication failed: wrong user or password"
                body = struct.pack(">ihh", correlation, SASL_AUTHENTICATION_FAILED, len(message))
                body += message + struct.pack(">i", 0)
            else:
                body = struct.pack(">ihhi", correlation, 0, -1, len(answer)) + answer.encode()
            if version == 1:
                body += struct.pack(">q", 0)
            send_frame(conn, body)
            if answer is None:
                return False
            if step == 2:
                return True
        else:
            return False


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(client, context, upstream, user, password):
    try:
        conn = context.wrap_socket(client, server_side=True)
        up = socket.create_connection(upstream)
    except (OSError, ssl.SSLError):
        client.close()
        return
    try:
        ok = authenticate(conn, up, Scram(user, password))
    except (OSError, ConnectionError, ValueError, KeyError, IndexError, struct.error):
        ok = False
    if not ok:
        conn.close()
        up.close()
        return
    threading.Thread(target=pump, args=(up, conn), daemon=True).start()
    pump(conn, up)


def main():
    port, upstream, cert, key, user, password = sys.argv[1:7]
    host, up_port = upstream.rsplit(":", 1)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", int(port)))
    print("listening", flush=True)
    while True:
        client, _ = listener.accept()
        args = (client, context, (host, int(up_port)), user, password)
        threading.Thread(target=serve, args=args, daemon=True).start()


if __name__ == "__main__":
    main()
