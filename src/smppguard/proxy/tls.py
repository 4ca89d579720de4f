"""TLS contexts for the listener and for the connection to the SMSC, from the config ([listen] tls_*, [upstream]
tls*). Verification is on unless turned off: the SMSC's certificate must chain to the CA given (or the system's)
and carry its name. TLS 1.2 at least.
"""

from __future__ import annotations

import ssl

from ..config import ListenConfig, UpstreamConfig


class TlsError(ValueError):
    """A TLS file cannot be used; the message names the key and the file."""


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str, table: str) -> None:
    try:
        ctx.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"[{table}] tls_cert / tls_key: cannot load {cert}{' and ' + key if key else ''}: "
                       f"{getattr(e, 'strerror', None) or e}") from None


def listener_context(listen: ListenConfig) -> ssl.SSLContext | None:
    """None: plain SMPP."""
    if not listen.tls_cert:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, listen.tls_cert, listen.tls_key, "listen")
    if listen.tls_client_ca:
        try:
            ctx.load_verify_locations(listen.tls_client_ca)
        except (OSError, ssl.SSLError) as e:
            raise TlsError(f"[listen] tls_client_ca: cannot load {listen.tls_client_ca}: "
                           f"{getattr(e, 'strerror', None) or e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def upstream_context(upstream: UpstreamConfig) -> ssl.SSLContext | None:
    """None: plain SMPP to the SMSC."""
    if not upstream.tls:
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=upstream.tls_ca or None)
    except (OSError, ssl.SSLError) as e:
        raise TlsError(f"[upstream] tls_ca: cannot load {upstream.tls_ca}: {getattr(e, 'strerror', None) or e}") \
            from None
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not upstream.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if upstream.tls_cert:
        _load_chain(ctx, upstream.tls_cert, upstream.tls_key, "upstream")
    return ctx
