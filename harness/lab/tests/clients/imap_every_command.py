#!/usr/bin/env python3
"""Python's imaplib drives every IMAP command the mock implements, checking each answer.

usage: imap_every_command.py HOST PORT USER PASSWORD
Prints one line per command; exits 0 only if every command gave what the RFCs promise.
"""
import imaplib
import re

import client_args


def ok(result, what):
    typ, data = result
    assert typ == "OK", (what, typ, data)
    print(what, "OK")
    return data


def main():
    host, port, user, password, _, _ = client_args.arguments()
    m = imaplib.IMAP4(host, port, timeout=10)
    caps = ok(m.capability(), "CAPABILITY")[0].decode()
    for cap in ["IDLE", "UIDPLUS", "NAMESPACE", "MOVE", "CHILDREN", "ID", "ENABLE"]:
        assert cap in caps.split(), (cap, caps)
    ok(m.noop(), "NOOP")
    ok(m.xatom("ID", '("name" "imaplib")'), "ID")
    ok(m.login(user, password), "LOGIN")
    ok(m.enable("CONDSTORE") if hasattr(m, "enable") else m.xatom("ENABLE", "CONDSTORE"), "ENABLE")
    ns = ok(m.namespace(), "NAMESPACE")
    assert b'(("" "/"))' in ns[0], ns
    ok(m.create("Py/Sub"), "CREATE")
    listing = ok(m.list("\"\"", "Py*"), "LIST")
    assert any(b"\\HasChildren" in l and l.endswith(b" Py") for l in listing), listing
    ok(m.rename("Py", "Pyth"), "RENAME")
    ok(m.subscribe("Pyth/Sub"), "SUBSCRIBE")
    assert any(b"Pyth/Sub" in l for l in ok(m.lsub("\"\"", "Pyth/*"), "LSUB")), "LSUB"
    ok(m.unsubscribe("Pyth/Sub"), "UNSUBSCRIBE")
    typ, data = m.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1704067200),
                         b"Subject: from imaplib\r\n\r\nappended body\r\n")
    assert typ == "OK" and b"APPENDUID" in data[0], data
    print("APPEND OK", data[0].decode())
    new_uid = re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1).decode()
    status = ok(m.status("INBOX", "(MESSAGES UIDNEXT UNSEEN RECENT UIDVALIDITY)"), "STATUS")
    assert b"MESSAGES 4" in status[0], status
    ok(m.select("INBOX", readonly=True), "EXAMINE")
    typ, data = m.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO", ("STORE on a read-only mailbox", typ, data)
    print("STORE refused read-only OK")
    count = int(ok(m.select("INBOX"), "SELECT")[0])
    assert count == 4, count
    ok(m.check(), "CHECK")
    data = ok(m.fetch("1", "(FLAGS UID RFC822.SIZE INTERNALDATE ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<0.5>)"), "FETCH")
    assert b"BODYSTRUCTURE" in data[0][0] and b"ENVELOPE" in data[0][0], data
    data = ok(m.fetch("2", "(BODY[])"), "FETCH BODY[] sets \\Seen")
    assert b"\\Seen" in b"".join(p[0] if isinstance(p, tuple) else p for p in data), data
    ok(m.uid("FETCH", "1:*", "(UID FLAGS)"), "UID FETCH")
    hits = ok(m.search(None, "FLAGGED"), "SEARCH")[0].split()
    assert hits == [b"4"], hits
    hits = ok(m.uid("SEARCH", None, "SUBJECT", '"from imaplib"'), "UID SEARCH")[0].split()
    assert hits == [new_uid.encode()], (hits, new_uid)
    ok(m.store("1:2", "+FLAGS.SILENT", "(\\Answered)"), "STORE")
    ok(m.uid("STORE", new_uid, "-FLAGS", "(\\Flagged)"), "UID STORE")
    typ, data = m.copy("1", "Pyth")
    assert typ == "OK" and b"COPYUID" in data[0], data
    print("COPY OK")
    ok(m.uid("COPY", new_uid, "Pyth/Sub"), "UID COPY")
    typ, data = m._simple_command("MOVE", "2", "Pyth")
    assert typ == "OK", (typ, data)
    print("MOVE OK")
    ok(m.uid("STORE", new_uid, "+FLAGS.SILENT", "(\\Deleted)"), "mark deleted")
    typ, data = m._simple_command("UID", "EXPUNGE", new_uid)
    assert typ == "OK", (typ, data)
    print("UID EXPUNGE OK")
    assert int(ok(m.select("INBOX"), "SELECT again")[0]) == 2
    ok(m.store("1", "+FLAGS.SILENT", "(\\Deleted)"), "STORE \\Deleted")
    expunged = ok(m.expunge(), "EXPUNGE")
    assert expunged == [b"1"], expunged
    ok(m.close(), "CLOSE")
    ok(m.delete("Pyth/Sub"), "DELETE")
    ok(m.delete("Pyth"), "DELETE parent")
    typ, _ = m.logout()
    assert typ == "BYE", typ
    print("LOGOUT BYE")


if __name__ == "__main__":
    client_args.run(main, imaplib.IMAP4.error, "imap error:")
