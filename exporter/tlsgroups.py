"""Pin an `ssl.SSLContext` to one key-exchange group, X25519 included, on every Python 3.11.

`SSLContext.set_ecdh_curve` reaches only the NIST curves on CPython 3.11.2 (Debian 12's): it maps
the name to an EC curve, and X25519 is not one (`UNKNOWN_GROUP`); later releases accept any
group name. OpenSSL itself has done this since 1.1.1 with `SSL_CTX_set1_groups_list`, a macro
over `SSL_CTX_ctrl`, so for X25519 this module calls it on the context's own `SSL_CTX`, found
in the same libssl the `_ssl` module uses. The pointer is checked before use: the options
OpenSSL reports for it must be the context's own, or nothing is called.
"""

from __future__ import annotations

import ctypes
import functools
import ssl

_SSL_CTRL_SET_GROUPS_LIST = 92  # from openssl/ssl.h, stable since OpenSSL 1.1.1


def set_group(ctx: ssl.SSLContext, name: str) -> None:
    """Allow exactly the group `name` (OpenSSL's short name) for key exchange on `ctx`."""
    try:
        ctx.set_ecdh_curve(name)
        return
    except ssl.SSLError:
        if name != "X25519":
            raise
    _set_groups_list(ctx, name)


@functools.cache
def _libssl() -> ctypes.CDLL:
    """The libssl the `_ssl` module is linked with (the one owning our SSL_CTX pointers)."""
    with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
        paths = {line.split()[-1] for line in maps if "libssl.so" in line}
    if len(paths) != 1:
        raise ssl.SSLError(f"cannot find the libssl in use to set the group ({sorted(paths)})")
    lib = ctypes.CDLL(paths.pop())
    lib.SSL_CTX_ctrl.restype = ctypes.c_long
    lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    lib.SSL_CTX_get_options.restype = ctypes.c_uint64
    lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
    return lib


def _set_groups_list(ctx: ssl.SSLContext, groups: str) -> None:
    lib = _libssl()
    # CPython's PySSLContext starts with PyObject_HEAD, then the SSL_CTX pointer.
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer or lib.SSL_CTX_get_options(pointer) != int(ctx.options):
        raise ssl.SSLError("cannot reach this context's SSL_CTX to set its groups")
    if lib.SSL_CTX_ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, groups.encode("ascii")) != 1:
        raise ssl.SSLError(f"OpenSSL refused the group list {groups!r}")
