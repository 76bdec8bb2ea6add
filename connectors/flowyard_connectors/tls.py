"""TLS for broker clients: one way to check the options, build the client context and
say what went wrong, shared by the MQTT, NATS and AMQP connectors.

Verification of the peer's chain and host name is always on; there is no option to
turn it off (a plant network is not a reason to accept any certificate). The clients
report TLS failures in different shapes (an `ssl` exception, its text inside a library
error, a dropped connection), so the text is matched as well as the type.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from flowyard.step import FlowContext


class TlsFiles(Protocol):
    @property
    def ca_file(self) -> str | None: ...

    @property
    def cert_file(self) -> str | None: ...

    @property
    def key_file(self) -> str | None: ...


def check_tls_files(options: TlsFiles, uses_tls: bool, enable: str = "`tls: true`") -> None:
    """The connection models' shared rule: certificate files only with TLS, a key only
    with its certificate."""
    if (options.ca_file or options.cert_file or options.key_file) and not uses_tls:
        raise ValueError(f"ca_file, cert_file and key_file need {enable}")
    if options.key_file and not options.cert_file:
        raise ValueError("key_file needs cert_file")


def client_context(options: TlsFiles, context: FlowContext) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=str(context.resolve_io_path(options.ca_file)) if options.ca_file else None)
    if options.cert_file:
        key = str(context.resolve_io_path(options.key_file)) if options.key_file else None
        tls.load_cert_chain(str(context.resolve_io_path(options.cert_file)), key)
    return tls


HUNG_UP = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, EOFError, ssl.SSLEOFError)


def hung_up_without_certificate(exc: BaseException, options: TlsFiles) -> bool:
    """The peer hung up on a TLS client that has no certificate. With TLS 1.3 a server
    that requires one sends its alert after the handshake, so the client may see only
    the hang-up: a reset, a broken pipe or an end of file, by timing (a CI run got a
    broken pipe where the test had always seen a reset)."""
    return not options.cert_file and isinstance(exc, HUNG_UP)


def describe_tls(exc: BaseException, where: str, options: TlsFiles, peer: str = "server") -> str | None:
    """An analyst's sentence for a TLS failure, or None when `exc` is not one."""
    text = str(exc)
    if hung_up_without_certificate(exc, options):
        return (f"{where}: the {peer} hung up during TLS ({type(exc).__name__}: {exc}): does it require a"
                " client certificate? set cert_file and key_file")
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        if "Hostname mismatch" in text or "IP address mismatch" in text:
            detail = (getattr(exc, "verify_message", None) or text).split("mismatch,")[-1].split("(_ssl")[0]
            return f"{where}: its TLS certificate is for another host name ({detail.strip().rstrip('.')})"
        reason = getattr(exc, "verify_message", None) or text.split("certificate verify failed:")[-1].split("(_ssl")[0]
        ca = f"the CA in {options.ca_file}" if options.ca_file else f"the system CAs (set ca_file to the {peer}'s CA)"
        return f"{where}: its TLS certificate is not trusted by {ca}: {reason.strip()}"
    if "CERTIFICATE_REQUIRED" in text or "BAD_CERTIFICATE" in text or "UNKNOWN_CA" in text:
        if options.cert_file:
            return f"{where} refused our client certificate {options.cert_file} (not signed by a CA it trusts?)"
        return f"{where} requires a client certificate: set cert_file and key_file"
    if isinstance(exc, ssl.SSLError):
        return f"{where}: the TLS handshake failed: {getattr(exc, 'reason', None) or text}"
    return None
