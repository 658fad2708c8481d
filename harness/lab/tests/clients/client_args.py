"""What the Python client scripts share: their command line, how they connect in each
mode, and exit status 2 for a refusal (the tests expect 2 for a wrong password).

Imported by the scripts beside it (they run by path, so their folder is on sys.path).
"""
import ssl
import sys


def arguments():
    """HOST PORT USER PASSWORD [MODE [CAFILE]] from the command line."""
    host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    mode = sys.argv[5] if len(sys.argv) > 5 else None
    cafile = sys.argv[6] if len(sys.argv) > 6 else None
    return host, port, user, password, mode, cafile


def connect(plain, implicit_tls, context_keyword, upgrade_mode, upgrade):
    """Connects as the command line says, with a 10 s timeout: MODE `--ssl` is
    implicit_tls(HOST, PORT, context_keyword=context); otherwise plain(HOST, PORT), then
    upgrade(connection, context) when MODE is upgrade_mode (STARTTLS or STLS).
    Returns the connection, USER, PASSWORD and MODE."""
    host, port, user, password, mode, cafile = arguments()
    if mode == "--ssl":
        ctx = ssl.create_default_context(cafile=cafile)
        conn = implicit_tls(host, port, timeout=10, **{context_keyword: ctx})
    else:
        conn = plain(host, port, timeout=10)
        if mode == upgrade_mode:
            upgrade(conn, ssl.create_default_context(cafile=cafile))
            print(upgrade_mode.lstrip("-"), "OK")
    return conn, user, password, mode


def run(main, refusal, label):
    """Runs main(); a `refusal` exception is printed and ends the script with status 2."""
    try:
        main()
    except refusal as e:
        print(label, e)
        sys.exit(2)
