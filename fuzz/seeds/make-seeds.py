#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/ (committed; run again
only to change them): real envelopes and messages from
protocol/tests/data/protocol-vectors.json, secret files in both forms,
dyndns2 requests as routers send them, the server configs the docs show,
DNS queries as dig sends them, and muxrpc packets as ssb-server sends them.
Python's standard library only."""
import base64, json, os, re, struct

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
corpus = os.path.join(os.path.dirname(here), "corpus")
vec = json.load(open(os.path.join(root, "protocol/tests/data/protocol-vectors.json")))


def write(target, name, data):
    os.makedirs(os.path.join(corpus, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# envelope: what a Pi posts, and the refusals the vectors name.
write("envelope", "update", compact(vec["envelope"]))
write("envelope", "sealed-to-wrong-key", compact({"v": 2, "sealed": vec["bad"]["sealed_to_wrong_key_b64"]["sealed_b64"]}))
write("envelope", "wrong-pub", compact({"v": 2, "sealed": vec["bad"]["wrong_pub"]["sealed_b64"]}))
write("envelope", "v1", compact(vec["bad"]["v1_envelope"]["envelope"]))
write("envelope", "spaced", json.dumps(vec["envelope"], indent=2))

# message: the signed plaintexts, every op.
write("message", "update", vec["signed_json"])
write("message", "wrong-pub", vec["bad"]["wrong_pub"]["signed_json"])
for op in ["release", "acme_set", "acme_clear"]:
    write("message", op, compact({"msg": vec[op + "_msg"], "signature": vec[op + "_signature"]}))
write("message", "other-signature", compact({"msg": vec["msg"], "signature": vec["bad"]["signature_of_other_msg"]["signature"]}))
msg = dict(vec["msg"], token_sha256="a" * 64)
write("message", "token", compact({"msg": msg, "signature": vec["signature"]}))

# secret_file: ssb-server's commented form and go-sbot's plain JSON.
write("secret_file", "ssb-server", vec["client_secret_file"])
write("secret_file", "go-sbot", json.dumps(vec["pub_secret_json"]))

# dyndns2: "<Authorization>\n<query string>".
auth = "Basic " + base64.b64encode(b"eb4890.peach.dinosaur.is:s3cret-token").decode()
write("dyndns2", "ddclient", auth + "\nsystem=dyndns&hostname=eb4890.peach.dinosaur.is&myip=24.12.12.12")
write("dyndns2", "inadyn-both", auth + "\nhostname=eb4890.peach.dinosaur.is&myip=24.12.12.12%2C2a01%3A4f8%3A%3A1")
write("dyndns2", "no-query", auth + "\n")
write("dyndns2", "two-hosts", auth + "\nhostname=a.peach.dinosaur.is,b.peach.dinosaur.is.&myip=2a01:4f8::1")

# server_config: the packaged file and each backend of docs/server.md.
write("server_config", "debian", open(os.path.join(root, "debian/server.toml")).read())
doc = open(os.path.join(root, "docs/server.md")).read()
reference = re.search(r"## Config reference\n\n```toml\n(.*?)```", doc, re.S).group(1)
write("server_config", "reference", reference)
minimal = 'domain = "peach.dinosaur.is"\n'
write("server_config", "minimal", minimal)
write("server_config", "embedded", minimal + '[dns]\nbackend = "embedded"\nlisten = "127.0.0.1:5300"\nnameservers = ["ns1.peach.dinosaur.is", "ns.example.net."]\nhostmaster = "hostmaster@example.org"\n')
write("server_config", "bind-local", minimal + '[dns]\nbackend = "bind-local"\nserver = "127.0.0.1:53"\nsession_key = "/run/named/session.key"\n')
write("server_config", "rfc2136", minimal + '[dns]\nbackend = "rfc2136"\nserver = "192.0.2.53:53"\nkey_name = "peach-dyndns"\nkey_algorithm = "hmac-sha256"\nkey_file = "/etc/peach-dyndns/tsig.key"\n')
write("server_config", "allowlist-http", minimal + 'public_url = "https://dyndns.peach.dinosaur.is:8443/update"\nreserved = ["admin"]\n[graph]\nbackend = "allowlist"\nallow = ["' + vec["client_id"] + '"]\n[http]\nheader_timeout_secs = 10\nmax_connections = 512\n[rate_limit]\nper_key_per_minute = 10\n')


# dns_query: queries as dig sends them (RFC 1035 wire format).
def qname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


TYPES = {"A": 1, "NS": 2, "SOA": 6, "TXT": 16, "AAAA": 28, "AXFR": 252, "ANY": 255}


def query(name, rtype, edns=None, qid=0x1234, flags=0x0120):
    head = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    body = qname(name) + struct.pack(">HH", TYPES[rtype], 1)
    if edns:
        # OPT: root name, type 41, class = payload size, ttl 0, no options.
        body += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return head + body


write("dns_query", "a", query("eb4890.peach.dinosaur.is", "A"))
write("dns_query", "aaaa-edns", query("eb4890.peach.dinosaur.is", "AAAA", edns=1232))
write("dns_query", "any-upper", query("EB4890.Peach.Dinosaur.IS", "ANY"))
write("dns_query", "soa", query("peach.dinosaur.is", "SOA", edns=4096))
write("dns_query", "ns", query("peach.dinosaur.is", "NS"))
write("dns_query", "txt-acme", query("_acme-challenge.eb4890.peach.dinosaur.is", "TXT"))
write("dns_query", "axfr", query("peach.dinosaur.is", "AXFR"))
write("dns_query", "nxdomain", query("nobody.peach.dinosaur.is", "A"))
write("dns_query", "out-of-zone", query("example.org", "A"))
write("dns_query", "glue", query("ns1.peach.dinosaur.is", "A"))

# sbot_frame: muxrpc packets (header: flags, u32 length, i32 request).
def packet(flags, req, body):
    return struct.pack(">BIi", flags, len(body), req) + body


JSON, UTF8, STREAM, END = 2, 1, 8, 4
goodbye = b"\0" * 9
write("sbot_frame", "async-json", packet(JSON, -1, b'{"following":true}') + goodbye)
write("sbot_frame", "async-string", packet(UTF8, -2, b"@LA9HYf5rnUJFHHTklKXLLRyrEytayjbFZRo76Aj/qKs=.ed25519"))
err = compact({"name": "Error", "message": "no such method: friends.nope", "stack": "Error: no such method\n    at x (y.js:1:2)"})
write("sbot_frame", "async-error", packet(JSON | END, -3, err.encode()))
item = compact({"key": "%abc=.sha256", "value": {"author": vec["pub_id"], "content": {"type": "peach-dyndns", "domain": "peach.dinosaur.is"}}})
write("sbot_frame", "stream", packet(JSON | STREAM, -4, item.encode()) + packet(JSON | STREAM | END, -4, b"true"))
write("sbot_frame", "server-call", packet(JSON, 5, compact({"name": ["gossip", "ping"], "args": [], "type": "duplex"}).encode()))
