#!/usr/bin/python3
"""Verifies the DKIM signature of a message with dkimpy (Debian's python3-dkim), an
implementation independent of the libopendkim that signed it.

Usage: dkim_verify.py TXT_RECORD_FILE < message.eml
The public key is not looked up in DNS: the record in TXT_RECORD_FILE ("v=DKIM1; k=rsa; p=...")
is returned for whatever selector._domainkey.domain the signature names, and the name asked
for is printed so the caller can check it.
Exit status: 0 when the signature verifies, 1 when it does not, 2 on usage errors.
Prints one JSON line: {"ok": bool, "queried": "s1._domainkey.acme.test.", "h": [...], ...}.
"""
import json
import re
import sys

try:
    import dkim
except ImportError:
    print("dkim_verify: python3-dkim is not installed (apt-get install python3-dkim)",
          file=sys.stderr)
    sys.exit(2)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        record = f.read().strip()
    message = sys.stdin.buffer.read()
    queried = []

    def dnsfunc(name, timeout=5):
        queried.append(name.decode() if isinstance(name, bytes) else name)
        return record

    ok = dkim.verify(message, dnsfunc=dnsfunc, minkey=1024)
    tags = {}
    match = re.search(rb"^DKIM-Signature:(.*?)\r?\n(?![ \t])", message, re.S | re.M | re.I)
    if match:
        for part in re.sub(rb"\s+", b"", match.group(1)).split(b";"):
            if b"=" in part:
                k, v = part.split(b"=", 1)
                tags[k.decode()] = v.decode()
    print(json.dumps({
        "ok": bool(ok),
        "queried": queried[0] if queried else "",
        "h": [h.lower() for h in tags.get("h", "").split(":") if h],
        "a": tags.get("a", ""),
        "c": tags.get("c", ""),
        "d": tags.get("d", ""),
        "s": tags.get("s", ""),
    }))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
