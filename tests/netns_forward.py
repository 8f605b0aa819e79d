"""Forward 127.0.0.1:PORT inside a network namespace to 127.0.0.1:PORT of this one.

    python tests/netns_forward.py NETNS PORT

The second engine the tests start lives in its own network namespace, where 127.0.0.1 is its
own loopback; this is how it reaches the registry on the machine's 127.0.0.1:5000 under the
very name the lines use (localhost:5000, which docker treats as an insecure registry). The
listening socket is made inside the namespace (setns, then back), every connection to the
registry from here. Prints "ready" once it listens; runs until killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter(fd: int) -> None:
    """Move this thread into the network namespace `fd` names."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def listen_inside(netns: str, port: int) -> socket.socket:
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    inside = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        enter(inside)
        try:
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen(64)
        finally:
            enter(home)
    finally:
        os.close(inside)
        os.close(home)
    return server


def pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def main() -> None:
    netns, port = sys.argv[1], int(sys.argv[2])
    server = listen_inside(netns, port)
    print("ready", flush=True)
    while True:
        client, _ = server.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    main()
