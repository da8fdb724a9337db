#!/usr/bin/env python3
"""End-to-end test of `nudge import contacts`: a real `nudge serve` on 127.0.0.1, the importer
run as a user runs it, and the contacts read back through the admin API.

Usage: python3 tests/import_e2e.py BUILD_DIR     (tests/e2e.sh runs it)

Covers: Mailchimp- and HubSpot-style exports (BOM, CRLF, a quoted multi-line field, a semicolon
delimiter, windows-1252 text), duplicates inside the file (case and spaces, and a phone-only
row), likely typos and role addresses, invalid rows going to the rejects CSV with line and
reason, a second import updating existing contacts, exit codes and error messages, and the
importer's peak memory on a file larger than that memory. Exits non-zero on any failure.
"""

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
ADMIN_KEY = "e2e-admin-key-0123456789"
WRITE_KEY = "e2e-write-key-0123456789"
MEMORY_LIMIT_MB = 64

failures = []


def check(condition, what):
    if condition:
        print(f"  ok    {what}")
    else:
        print(f"  FAIL  {what}")
        failures.append(what)
    return condition


def check_eq(actual, expected, what):
    return check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, data_dir):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, NUDGE_WRITE_KEY=WRITE_KEY, NUDGE_ADMIN_KEY=ADMIN_KEY,
                   NUDGE_LOG_LEVEL="warn")
        self.log = open(os.path.join(data_dir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", f"127.0.0.1:{self.port}", "--data",
             os.path.join(data_dir, "data")],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nudge serve exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            if time.time() > deadline:
                raise RuntimeError("nudge serve did not answer /healthz within 30 s")
            time.sleep(0.1)

    def contact(self, key):
        req = urllib.request.Request(
            f"{self.url}/api/v1/contacts/{urllib.parse.quote(key, safe='@+')}",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def preview(self, condition):
        """How many contacts a condition matches (POST /api/v1/segments/preview)."""
        req = urllib.request.Request(
            f"{self.url}/api/v1/segments/preview",
            data=json.dumps({"condition": condition}).encode(),
            headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
            method="POST")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)["count"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_import(binary, server_url, args, env_key=True, cwd=None):
    env = dict(os.environ)
    env.pop("NUDGE_ADMIN_KEY", None)
    env.pop("NUDGE_SERVER", None)
    if env_key:
        env["NUDGE_ADMIN_KEY"] = ADMIN_KEY
    cmd = [binary, "import", "contacts"] + args
    if server_url:
        cmd += ["--server", server_url]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, timeout=1800)


def summary_of(result, what):
    check_eq(result.returncode, 0, f"{what}: exit code (stderr: {result.stderr.decode()!r})")
    try:
        return json.loads(result.stdout)
    except ValueError:
        check(False, f"{what}: --json prints JSON, got {result.stdout!r}")
        return {}


def read_side_file(path, delimiter=","):
    """The header and the rows by line of a rejects/flagged CSV (which may hold non-UTF-8
    bytes copied from the input)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return rows[0], {int(r[0]): r for r in rows[1:]}


def test_mailchimp_export(binary, server, work):
    print("Mailchimp-style export (BOM, CRLF, multi-line field, duplicates, bad rows)")
    src = os.path.join(work, "mailchimp_export.csv")
    shutil.copy(os.path.join(FIXTURES, "mailchimp_export.csv"), src)
    result = run_import(binary, server.url, [src, "--json", "--source", "mailchimp", "--tag",
                                             "newsletter-2024", "--tag", "mailchimp"])
    s = summary_of(result, "first import")
    check_eq(s.get("rows"), 11, "rows read (the blank ',,,' line is skipped)")
    check_eq(s.get("new"), 5, "new contacts")
    check_eq(s.get("updated"), 0, "updated contacts")
    check_eq(s.get("merged"), 2, "duplicates merged (case and spaces; phone only)")
    check_eq(s.get("rejected"), 4, "rejected rows")
    check_eq(s.get("flagged"), 2, "flagged rows")
    check_eq(s.get("flagged_typos"), 1, "flagged typos")
    check_eq(s.get("flagged_role"), 1, "flagged role addresses")

    rejects = os.path.join(work, "mailchimp_export.rejects.csv")
    flagged = os.path.join(work, "mailchimp_export.flagged.csv")
    check_eq(s.get("rejects_file"), rejects, "the rejects file sits beside the input")
    header, rows = read_side_file(rejects)
    check_eq(header[:3], ["line", "reason", "Email Address"], "rejects header")
    check_eq(len(header), 10, "rejects header: line, reason and the 8 original columns")
    check_eq(sorted(rows), [9, 10, 11, 14], "rejected lines")
    check("invalid email" in rows.get(9, ["", ""])[1], "line 9 rejected as an invalid email")
    check_eq(rows.get(9, [""] * 3)[2], "not-an-email", "the rejected row keeps its fields")
    check("ragged" in rows.get(10, ["", ""])[1], "line 10 rejected as a ragged row")
    reason = rows.get(11, ["", ""])[1]
    check("UTF-8" in reason and "11:4" in reason,
          f"line 11 rejected for invalid UTF-8 at 11:4 ({reason!r})")
    check("no email, phone or user id" in rows.get(14, ["", ""])[1],
          "line 14 rejected for having no identifier")
    header, rows = read_side_file(flagged)
    check_eq(sorted(rows), [7, 8], "flagged lines")
    check_eq(rows.get(7, ["", ""])[1], "likely typo: gmial.com -> gmail.com?", "typo reason")
    check_eq(rows.get(8, ["", ""])[1], "role address: info@", "role reason")

    ann = server.contact("ann@example.com")
    if check(ann is not None, "ann@example.com exists"):
        check_eq(ann["source"], "mailchimp", "ann: source")
        check_eq(ann["tags"], ["newsletter-2024", "mailchimp"], "ann: tags")
        check_eq(ann["phone"], "+14155552671", "ann: normalized phone")
        t = ann["traits"]
        check_eq(t.get("first_name"), "Annie", "ann: the duplicate row's first name won")
        check_eq(t.get("member_rating"), 2,
                 "ann: MEMBER_RATING -> member_rating, from the last row that matched her")
        check_eq(t.get("optin_time"), "2024-01-03 09:00:00", "ann: OPTIN_TIME -> optin_time")
        check_eq(t.get("tags"), ["VIP", "Newsletter"], "ann: TAGS -> tags list")
        check_eq(t.get("notes"), "phone only, same number as Ann",
                 "ann: the phone-only duplicate merged into her")
    bob = server.contact("bob@example.org")
    if check(bob is not None, "bob@example.org exists"):
        check_eq(bob["traits"].get("notes"), "met at the fair\r\nwants a demo",
                 "bob: the quoted multi-line field")
        check_eq(bob["traits"].get("last_name"), "Smith, Jr.", "bob: a quoted comma")
    erin = server.contact("erin@example.net")
    if check(erin is not None, "erin@example.net exists"):
        check_eq(erin["traits"].get("first_name"), "Zoë", "erin: UTF-8 text")
    check(server.contact("carol@gmial.com") is not None, "the flagged typo was imported")
    check(server.contact("info@acme-corp.com") is not None, "the role address was imported")
    check(server.contact("not-an-email") is None, "the invalid row was not imported")
    # How the list came in is something to segment on.
    check_eq(server.preview('source == "mailchimp" and tags contains "newsletter-2024"'), 5,
             "a condition on the import's source and tag finds its five contacts")
    check_eq(server.preview('tags contains "no-such-tag"'), 0, "an unknown tag finds nobody")


def test_hubspot_export(binary, server, work):
    print("HubSpot-style export (semicolons, windows-1252, overlaps the first import)")
    src = os.path.join(work, "hubspot_export.csv")
    shutil.copy(os.path.join(FIXTURES, "hubspot_export.csv"), src)
    rejects = os.path.join(work, "out", "hubspot.rejects.csv")
    os.makedirs(os.path.dirname(rejects))
    result = run_import(binary, server.url, [src, "--json", "--encoding", "windows-1252",
                                             "--reject-role", "--source", "hubspot", "--tag",
                                             "crm", "--rejects", rejects, "--batch", "2"])
    s = summary_of(result, "HubSpot import")
    check_eq(s.get("rows"), 6, "rows read")
    check_eq(s.get("new"), 2, "new contacts (frank, gina)")
    check_eq(s.get("updated"), 2, "existing contacts updated (ann, bob)")
    check_eq(s.get("merged"), 1, "FRANK@EXAMPLE.DE merged into frank@example.de")
    check_eq(s.get("rejected"), 1, "--reject-role rejects sales@")
    check_eq(s.get("flagged"), 1, "gina@hotmail.con flagged")
    header, rows = read_side_file(rejects, delimiter=";")
    check_eq(header[:3], ["line", "reason", "Record ID"], "rejects use the input's delimiter")
    check_eq(sorted(rows), [7], "rejected lines")
    check_eq(rows.get(7, ["", ""])[1], "role address: sales@", "role rejection reason")
    check(os.path.exists(os.path.join(work, "out", "hubspot_export.flagged.csv")),
          "the flagged file sits beside the rejects file")

    frank = server.contact("frank@example.de")
    if check(frank is not None, "frank@example.de exists"):
        t = frank["traits"]
        check_eq(t.get("last_name"), "Müller", "frank: windows-1252 text transcoded")
        check_eq(t.get("company"), "Müller GmbH", "frank: Company Name -> company")
        check_eq(t.get("country"), "DE", "frank: Country/Region -> country")
        check_eq(t.get("title"), "CTO", "frank: Job Title -> title")
        check_eq(t.get("crm_id"), "105", "frank: Record ID -> crm_id (of line 6, the last row)")
        check_eq(t.get("lifecycle_stage"), "lead", "frank: Lifecycle Stage -> lifecycle_stage")
        check_eq(frank["source"], "hubspot", "frank: source")
        check_eq(frank["tags"], ["crm"], "frank: tags")
        check_eq(frank["phone"], "+4930901820", "frank: phone read in his country")
    ann = server.contact("ann@example.com")
    if check(ann is not None, "ann@example.com still exists"):
        check_eq(ann["source"], "mailchimp", "ann: the first source stays")
        check_eq(ann["tags"], ["newsletter-2024", "mailchimp", "crm"], "ann: tags unite")
        check_eq(ann["traits"].get("company"), "Acme", "ann: new traits added")
        check_eq(ann["traits"].get("member_rating"), 2, "ann: earlier traits kept")
    bob = server.contact("bob@example.org")
    if check(bob is not None, "bob@example.org still exists"):
        check_eq(bob["traits"].get("company"), "Bob; Corp", "bob: a quoted semicolon")
    check(server.contact("sales@bigco.com") is None, "the rejected role address is absent")

    print("Importing the Mailchimp export again")
    src = os.path.join(work, "mailchimp_export.csv")
    s = summary_of(run_import(binary, server.url, [src, "--json"]), "second Mailchimp import")
    check_eq(s.get("new"), 0, "nothing new")
    check_eq(s.get("updated"), 5, "every contact updated")
    check_eq(s.get("merged"), 2, "the duplicates still count as merged")
    check_eq(s.get("rejected"), 4, "the same rows rejected")


def test_households_and_long_numbers(binary, server, work):
    print("A shared phone with different emails; numbers a JSON number would change")
    src = os.path.join(work, "household.csv")
    with open(src, "w", newline="") as f:
        f.write("Email,First Name,Phone,Reference,Balance,Seats\r\n"
                "alice@house.example,Alice,+1 212 555 0101,99999999999999999999,-0,12\r\n"
                "bob@house.example,Bob,+1 212 555 0101,1234567890123456,-0.0,3.5\r\n")
    s = summary_of(run_import(binary, server.url, [src, "--json"]), "household import")
    check_eq(s.get("new"), 2, "two people sharing a phone are two contacts")
    alice, bob = server.contact("alice@house.example"), server.contact("bob@house.example")
    if check(alice is not None and bob is not None, "alice and bob both exist"):
        check_eq(alice["email"], "alice@house.example", "alice keeps her email")
        check_eq(bob["phone"], "+12125550101", "bob keeps the shared phone")
        check_eq(alice["traits"].get("reference"), "99999999999999999999",
                 "a 20-digit code stays text")
        check_eq(bob["traits"].get("reference"), "1234567890123456", "16 digits stay text")
        check_eq(alice["traits"].get("balance"), "-0", "a negative zero stays text")
        check_eq(alice["traits"].get("seats"), 12, "a plain integer is a number")
        check_eq(bob["traits"].get("seats"), 3.5, "a plain decimal is a number")


def test_errors(binary, server, work):
    print("Errors: usage, unreachable server, unreadable files")
    src = os.path.join(work, "mailchimp_export.csv")
    r = run_import(binary, server.url, [os.path.join(work, "missing.csv")])
    check_eq(r.returncode, 2, "a missing file is a usage error")
    check(b"missing.csv" in r.stderr, "the message names the missing file")
    r = run_import(binary, server.url, [src], env_key=False)
    check_eq(r.returncode, 2, "no admin key is a usage error")
    check(b"NUDGE_ADMIN_KEY" in r.stderr, "the message says how to give the key")
    r = run_import(binary, server.url, [src, "--batch", "6000"])
    check_eq(r.returncode, 2, "--batch over 5000 is a usage error")

    rejects = os.path.join(work, "unreachable.rejects.csv")
    r = run_import(binary, f"http://127.0.0.1:{free_port()}", [src, "--rejects", rejects])
    check_eq(r.returncode, 1, "an unreachable server fails the import")
    check(b"0 rows were sent" in r.stderr, f"it says how many rows were sent ({r.stderr!r})")
    check(not os.path.exists(rejects) and not os.path.exists(rejects + ".partial"),
          "nothing half-written is left behind")

    bad_key = subprocess.run([binary, "import", "contacts", src, "--server", server.url, "--key",
                              "wrong", "--rejects", rejects], capture_output=True, timeout=60)
    check_eq(bad_key.returncode, 1, "a wrong key fails the import")
    check(b"unknown admin key" in bad_key.stderr, "the server's reason is shown")

    utf16 = os.path.join(work, "utf16.csv")
    with open(utf16, "wb") as f:
        f.write("Email\r\nann@example.com\r\n".encode("utf-16"))
    r = run_import(binary, server.url, [utf16])
    check_eq(r.returncode, 2, "a UTF-16 file is refused")
    check(b"UTF-16" in r.stderr and b"1:1" in r.stderr, f"and says what and where ({r.stderr!r})")
    check(not os.path.exists(os.path.join(work, "utf16.rejects.csv")),
          "no rejects file for a file that was not read")

    noid = os.path.join(work, "noid.csv")
    with open(noid, "w") as f:
        f.write("Name,City\nAnn,Berlin\n")
    r = run_import(binary, server.url, [noid])
    check_eq(r.returncode, 2, "a file without an identifier column is refused")
    check(b"--map" in r.stderr, "and the message suggests --map")
    r = run_import(binary, server.url, [noid, "--map", "Name=user_id", "--json"])
    s = summary_of(r, "--map Name=user_id")
    check_eq(s.get("new"), 1, "--map makes a column the user id")
    c = server.contact("Ann")
    check(c is not None and c["traits"].get("city") == "Berlin", "the mapped contact exists")


def test_bounded_memory(binary, server, work):
    rows = 200_000
    print(f"Bounded memory: {rows:,} rows, larger than {MEMORY_LIMIT_MB} MB")
    path = os.path.join(work, "big.csv")
    # Rows carry user ids, not emails, so that the test measures the importer rather than the
    # server's matching; a long notes column makes the file larger than the memory allowed.
    filler = "lorem ipsum dolor sit amet " * 13
    with open(path, "w", newline="") as f:
        f.write("User ID,First Name,City,Plan,Notes\r\n")
        for i in range(rows):
            f.write(f"big-{i},First {i},City {i % 97},plan-{i % 3},\"{filler}{i}\"\r\n")
    size_mb = os.path.getsize(path) / 2**20
    check(size_mb > MEMORY_LIMIT_MB, f"the file is {size_mb:.0f} MB")
    # A child Python runs the importer so that RUSAGE_CHILDREN counts the importer alone.
    probe = (
        "import json, os, resource, subprocess, sys, time\n"
        "t = time.time()\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "print(json.dumps({'rc': r.returncode, 'seconds': time.time() - t,\n"
        "  'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,\n"
        "  'stdout': r.stdout.decode(), 'stderr': r.stderr.decode()}))\n")
    env = dict(os.environ, NUDGE_ADMIN_KEY=ADMIN_KEY)
    out = subprocess.run([sys.executable, "-c", probe, binary, "import", "contacts", path,
                          "--server", server.url, "--json"], env=env, capture_output=True,
                         timeout=3600)
    try:
        m = json.loads(out.stdout)
    except ValueError:
        check(False, f"the probe reports ({out.stdout!r} {out.stderr!r})")
        return
    check_eq(m["rc"], 0, f"the big import succeeds ({m['stderr']!r})")
    s = json.loads(m["stdout"]) if m["rc"] == 0 else {}
    check_eq(s.get("new"), rows, "every row imported")
    peak_mb = m["maxrss_kb"] / 1024
    print(f"  info  {rows:,} rows ({size_mb:.0f} MB) in {m['seconds']:.1f} s, importer peak RSS "
          f"{peak_mb:.1f} MB")
    check(peak_mb < MEMORY_LIMIT_MB, f"the importer's peak RSS {peak_mb:.1f} MB stays under "
          f"{MEMORY_LIMIT_MB} MB")
    c = server.contact(f"big-{rows - 1}")
    check(c is not None and c["traits"].get("notes", "").endswith(str(rows - 1)),
          "the last row arrived whole")


def main():
    if len(sys.argv) != 2:
        print("usage: tests/import_e2e.py BUILD_DIR", file=sys.stderr)
        return 2
    binary = os.path.join(os.path.abspath(sys.argv[1]), "nudge")
    if not os.access(binary, os.X_OK):
        print(f"import_e2e: {binary} is missing; build it first", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="nudge-import-e2e-")
    server = None
    try:
        server = Server(binary, work)
        test_mailchimp_export(binary, server, work)
        test_hubspot_export(binary, server, work)
        test_households_and_long_numbers(binary, server, work)
        test_errors(binary, server, work)
        test_bounded_memory(binary, server, work)
    except Exception as e:  # a crash of the test itself is a failure too
        failures.append(f"{type(e).__name__}: {e}")
        print(f"  FAIL  {type(e).__name__}: {e}")
    finally:
        if server:
            server.stop()
    if failures:
        print(f"import_e2e: {len(failures)} FAILED (files kept in {work}):")
        for f in failures:
            print(f"  - {f}")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    print("import_e2e: all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
