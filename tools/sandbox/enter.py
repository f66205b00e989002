"""Become the sandbox user, then run a command: the first thing every untrusted child executes.

    python -m kda_mcp.tools.sandbox.enter --uid U --gid G [--net private|shared] [--nproc N]
                                          [--fsize BYTES] [--dir D] -- COMMAND...

Runs as root (the server), so it can take the child's network away (a network namespace of its
own with only a loopback device) before giving up root for good: supplementary groups cleared,
real, effective and saved ids set to the sandbox user, no way back through set-user-id programs
(no_new_privs), core dumps off, limits on processes and file size. (Whether other processes of
the same user may trace it is the child's own business: the executor makes itself non-dumpable
before any solution code loads, since exec resets that attribute.) Then it execs COMMAND. It
imports nothing but the standard library, so it adds a few milliseconds, not an interpreter's
worth of imports.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import signal
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _fail(message: str) -> None:
    sys.stderr.write(f"kda-mcp sandbox: {message}\n")
    sys.stderr.flush()
    os._exit(126)


def _loopback_up() -> None:
    """A new network namespace has a loopback device that is down; some libraries expect one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def main(argv: list[str]) -> None:
    if "--" not in argv:
        _fail("usage: enter --uid U --gid G [options] -- COMMAND...")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    opts: dict[str, str] = {}
    for i in range(0, len(options) - 1, 2):
        opts[options[i].lstrip("-")] = options[i + 1]
    if not command or "uid" not in opts or "gid" not in opts:
        _fail("usage: enter --uid U --gid G [options] -- COMMAND...")
    uid, gid = int(opts["uid"]), int(opts["gid"])
    if uid == 0 or gid == 0:
        _fail("refusing to run untrusted code as root")
    libc = ctypes.CDLL(None, use_errno=True)

    if opts.get("net", "private") == "private":
        if libc.unshare(CLONE_NEWNET) != 0:
            _fail(f"cannot create a private network namespace (errno {ctypes.get_errno()})")
        try:
            _loopback_up()
        except OSError:
            pass  # a namespace without loopback still has no way out, which is the point
    nproc = int(opts.get("nproc", "4096"))
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    fsize = int(opts.get("fsize", str(64 * 2**30)))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        _fail("could not drop privileges")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        _fail("prctl(PR_SET_NO_NEW_PRIVS) failed")
    # Changing ids cleared the parent-death signal: set it again, so the child dies with the
    # process that started it (the server) even if nothing else kills it.
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.umask(0o077)
    if "dir" in opts:
        os.chdir(opts["dir"])
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _fail(f"cannot run {command[0]}: {exc.strerror}")


if __name__ == "__main__":
    main(sys.argv[1:])
