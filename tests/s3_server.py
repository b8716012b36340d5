"""tests/s3_server.py: a small S3-compatible object store for the tests of
bucket mounts (sandbox_mount.py), since no S3 server is packaged in Debian 12.

It speaks the S3 REST API that s3fs uses, path style (/bucket/key), over
real HTTP: ListObjects (v1 and v2, prefix/delimiter/marker/max-keys), HEAD,
GET (with Range), PUT (with x-amz-meta-* and x-amz-copy-source, metadata
directive COPY/REPLACE), DELETE, multi-object delete, multipart uploads,
GET ?location. Every request must carry a valid AWS Signature Version 4
(the signature is recomputed from the secret key, as S3 does): a wrong key
gets 403 InvalidAccessKeyId, a wrong secret 403 SignatureDoesNotMatch.
Objects live in memory; `log` records (method, path) of each request.

    srv = S3Server({"AKID": "secret"}, buckets=["data"]); srv.start(); ...; srv.stop()
    or: python3 tests/s3_server.py PORT AKID SECRET BUCKET   (for trying it by hand)
"""
import hashlib
import hmac
import http.server
import threading
import time
import urllib.parse
import uuid
from email.utils import formatdate
from xml.sax.saxutils import escape


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def _sign(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(s, slash):
    return urllib.parse.quote(s, safe="-_.~" + ("/" if not slash else ""))


class S3Server:
    def __init__(self, keys, buckets=(), host="127.0.0.1", port=0):
        self.keys = dict(keys)          # access key id -> secret
        self.buckets = {b: {} for b in buckets}   # bucket -> key -> (bytes, meta dict, mtime, etag)
        self.uploads = {}
        self.log = []
        self.mu = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer._handle(self, "GET")

            def do_HEAD(self):
                outer._handle(self, "HEAD")

            def do_PUT(self):
                outer._handle(self, "PUT")

            def do_DELETE(self):
                outer._handle(self, "DELETE")

            def do_POST(self):
                outer._handle(self, "POST")

        self.httpd = http.server.ThreadingHTTPServer((host, port), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://%s:%d" % (host, self.port)
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- objects, for tests ------------------------------------------------------
    def put(self, bucket, key, data, meta=None):
        with self.mu:
            self.buckets[bucket][key] = (data, dict(meta or {}), time.time(), hashlib.md5(data).hexdigest())

    def get(self, bucket, key):
        with self.mu:
            o = self.buckets.get(bucket, {}).get(key)
        return o[0] if o else None

    def keys_of(self, bucket):
        with self.mu:
            return sorted(self.buckets.get(bucket, {}))

    # ---- protocol -------------------------------------------------------------------
    def _reply(self, h, status, body=b"", ctype="application/xml", headers=None, head=False):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Date", formatdate(usegmt=True))
        h.send_header("x-amz-request-id", uuid.uuid4().hex[:16])
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body and not head:
            h.wfile.write(body)

    def _error(self, h, status, code, msg, head=False):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message>"
                "<RequestId>0</RequestId></Error>" % (code, escape(msg))).encode()
        self._reply(h, status, b"" if head else body, head=head)

    def _auth(self, h, method, path, query, payload):
        """'' when the request carries a valid SigV4 signature, else the
        S3 error code."""
        auth = h.headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "AccessDenied"
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(",") if "=" in p)
        cred = parts.get("Credential", "").split("/")
        if len(cred) != 5 or cred[0] not in self.keys:
            return "InvalidAccessKeyId"
        akid, date, region, service, _ = cred
        signed = parts.get("SignedHeaders", "").split(";")
        amz_date = h.headers.get("x-amz-date", "")
        psha = h.headers.get("x-amz-content-sha256", "")
        if psha not in ("UNSIGNED-PAYLOAD",) and psha != hashlib.sha256(payload).hexdigest():
            return "XAmzContentSHA256Mismatch"
        q = urllib.parse.parse_qsl(query, keep_blank_values=True)
        cq = "&".join("%s=%s" % (_uri_encode(k, True), _uri_encode(v, True)) for k, v in sorted(q))
        ch = "".join("%s:%s\n" % (n, " ".join((h.headers.get(n) or "").split())) for n in signed)
        creq = "\n".join([method, _uri_encode(urllib.parse.unquote(path), False), cq, ch, ";".join(signed), psha])
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date, "/".join(cred[1:]),
                         hashlib.sha256(creq.encode()).hexdigest()])
        k = _sign(("AWS4" + self.keys[akid]).encode(), date)
        for m in (region, service, "aws4_request"):
            k = _sign(k, m)
        want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        return "" if hmac.compare_digest(want, parts.get("Signature", "")) else "SignatureDoesNotMatch"

    def _handle(self, h, method):
        u = urllib.parse.urlsplit(h.path)
        n = int(h.headers.get("Content-Length") or 0)
        payload = h.rfile.read(n) if n else b""
        head = method == "HEAD"
        with self.mu:
            self.log.append((method, h.path))
        bad = self._auth(h, method, u.path, u.query, payload)
        if bad:
            return self._error(h, 403, bad, "refused: " + bad, head)
        segs = urllib.parse.unquote(u.path).lstrip("/").split("/", 1)
        bucket, key = segs[0], (segs[1] if len(segs) > 1 else "")
        q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        with self.mu:
            objs = self.buckets.get(bucket)
        if objs is None:
            return self._error(h, 404, "NoSuchBucket", "no bucket " + bucket, head)
        if not key:
            if method in ("GET", "HEAD") and "location" in q:
                return self._reply(h, 200, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                   b"<LocationConstraint>us-east-1</LocationConstraint>", head=head)
            if method == "HEAD":
                return self._reply(h, 200, head=True)
            if method == "GET":
                return self._list(h, bucket, objs, q)
            if method == "POST" and "delete" in q:
                import re
                gone = re.findall(rb"<Key>(.*?)</Key>", payload)
                with self.mu:
                    for k in gone:
                        objs.pop(k.decode(), None)
                return self._reply(h, 200, b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult/>")
            return self._error(h, 405, "MethodNotAllowed", method)
        if method == "POST" and "uploads" in q:
            uid = uuid.uuid4().hex
            with self.mu:
                self.uploads[uid] = {"key": key, "parts": {}, "meta": self._meta(h)}
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>%s</Bucket>"
                    "<Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                    % (escape(bucket), escape(key), uid)).encode()
            return self._reply(h, 200, body)
        if "uploadId" in q:
            up = self.uploads.get(q["uploadId"])
            if not up:
                return self._error(h, 404, "NoSuchUpload", q["uploadId"], head)
            if method == "PUT":
                src = h.headers.get("x-amz-copy-source")
                if src:
                    data = self._copy_source(src)
                    if data is None:
                        return self._error(h, 404, "NoSuchKey", src)
                    rng = h.headers.get("x-amz-copy-source-range", "")
                    if rng.startswith("bytes="):
                        a, b = rng[6:].split("-")
                        data = data[int(a):int(b) + 1]
                    up["parts"][int(q["partNumber"])] = data
                    et = hashlib.md5(data).hexdigest()
                    return self._reply(h, 200, ("<CopyPartResult><ETag>\"%s\"</ETag><LastModified>%s</LastModified>"
                                                "</CopyPartResult>" % (et, _iso(time.time()))).encode())
                up["parts"][int(q["partNumber"])] = payload
                return self._reply(h, 200, headers={"ETag": "\"%s\"" % hashlib.md5(payload).hexdigest()})
            if method == "POST":
                data = b"".join(up["parts"][k] for k in sorted(up["parts"]))
                self.put(bucket, up["key"], data, up["meta"])
                self.uploads.pop(q["uploadId"], None)
                return self._reply(h, 200, ("<CompleteMultipartUploadResult><Key>%s</Key><ETag>\"x\"</ETag>"
                                            "</CompleteMultipartUploadResult>" % escape(key)).encode())
            if method == "DELETE":
                self.uploads.pop(q["uploadId"], None)
                return self._reply(h, 204)
        if method == "PUT":
            src = h.headers.get("x-amz-copy-source")
            if src:
                with self.mu:
                    so = self._copy_obj(src)
                if so is None:
                    return self._error(h, 404, "NoSuchKey", src)
                meta = so[1] if h.headers.get("x-amz-metadata-directive", "COPY") != "REPLACE" else self._meta(h)
                self.put(bucket, key, so[0], meta)
                return self._reply(h, 200, ("<CopyObjectResult><LastModified>%s</LastModified><ETag>\"%s\"</ETag>"
                                            "</CopyObjectResult>" % (_iso(time.time()),
                                                                     hashlib.md5(so[0]).hexdigest())).encode())
            self.put(bucket, key, payload, self._meta(h))
            return self._reply(h, 200, headers={"ETag": "\"%s\"" % hashlib.md5(payload).hexdigest()})
        if method == "DELETE":
            with self.mu:
                objs.pop(key, None)
            return self._reply(h, 204)
        with self.mu:
            o = objs.get(key)
        if o is None:
            return self._error(h, 404, "NoSuchKey", key, head)
        data, meta, mtime, etag = o
        hdrs = {"ETag": "\"%s\"" % etag, "Last-Modified": formatdate(mtime, usegmt=True), "Accept-Ranges": "bytes"}
        for k, v in meta.items():
            hdrs["x-amz-meta-" + k] = v
        if "Content-Type" in meta:
            pass
        rng = h.headers.get("Range", "")
        status = 200
        if rng.startswith("bytes=") and data:
            a, _, b = rng[6:].partition("-")
            a = int(a) if a else 0
            b = min(int(b), len(data) - 1) if b else len(data) - 1
            hdrs["Content-Range"] = "bytes %d-%d/%d" % (a, b, len(data))
            data, status = data[a:b + 1], 206
        return self._reply(h, status, data, ctype="application/octet-stream", headers=hdrs, head=head)

    def _meta(self, h):
        return {k[len("x-amz-meta-"):].lower(): v for k, v in h.headers.items() if k.lower().startswith("x-amz-meta-")}

    def _copy_obj(self, src):
        b, _, k = urllib.parse.unquote(src).lstrip("/").partition("/")
        return self.buckets.get(b, {}).get(k)

    def _copy_source(self, src):
        with self.mu:
            o = self._copy_obj(src)
        return o[0] if o else None

    def _list(self, h, bucket, objs, q):
        v2 = q.get("list-type") == "2"
        prefix, delim = q.get("prefix", ""), q.get("delimiter", "")
        start = q.get("continuation-token") or q.get("start-after", "") if v2 else q.get("marker", "")
        maxk = int(q.get("max-keys", "1000"))
        with self.mu:
            keys = sorted(k for k in objs if k.startswith(prefix) and k > start)
            snap = {k: objs[k] for k in keys}
        contents, prefixes, last, trunc = [], [], "", False
        for k in keys:
            rest = k[len(prefix):]
            if delim and delim in rest:
                p = prefix + rest.split(delim, 1)[0] + delim
                if p in prefixes or (last and p <= last):
                    continue
                item = ("p", p)
            else:
                item = ("c", k)
            if len(contents) + len(prefixes) >= maxk:
                trunc = True
                break
            (prefixes if item[0] == "p" else contents).append(item[1])
            last = item[1]
        x = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
             "<Name>%s</Name><Prefix>%s</Prefix><MaxKeys>%d</MaxKeys><IsTruncated>%s</IsTruncated>"
             % (escape(bucket), escape(prefix), maxk, "true" if trunc else "false")]
        if delim:
            x.append("<Delimiter>%s</Delimiter>" % escape(delim))
        if trunc:
            x.append("<NextContinuationToken>%s</NextContinuationToken>" % escape(last) if v2
                     else "<NextMarker>%s</NextMarker>" % escape(last))
        if v2:
            x.append("<KeyCount>%d</KeyCount>" % (len(contents) + len(prefixes)))
        for k in contents:
            data, meta, mtime, etag = snap[k]
            x.append("<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>\"%s\"</ETag><Size>%d</Size>"
                     "<StorageClass>STANDARD</StorageClass></Contents>" % (escape(k), _iso(mtime), etag, len(data)))
        for p in prefixes:
            x.append("<CommonPrefixes><Prefix>%s</Prefix></CommonPrefixes>" % escape(p))
        x.append("</ListBucketResult>")
        return self._reply(h, 200, "".join(x).encode())


if __name__ == "__main__":
    import sys
    port, akid, secret, bucket = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    s = S3Server({akid: secret}, buckets=[bucket], port=port).start()
    print("listening on", s.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        s.stop()
