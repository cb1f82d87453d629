"""The forward proxy the environment names for a URL, as ``requests`` and curl read it; read once per client.

The Big client (:mod:`kws.rest.client`) talks urllib3 directly, which reads no
environment, so the rules ``requests`` applied for it before live here:

* ``<scheme>_proxy`` (``http_proxy``, ``https_proxy``), else ``all_proxy``, names the
  proxy; the lower-case name wins over the upper-case one, and ``HTTP_PROXY`` is
  ignored when ``REQUEST_METHOD`` is set (a CGI request can set it: "httpoxy");
* ``no_proxy`` lists what goes direct, comma-separated: ``*`` (everything), IPv4
  addresses and CIDR blocks (``10.0.0.0/8``) for a host given as an address, and
  otherwise name suffixes (``example.com`` covers ``big.example.com``; a leading dot
  is allowed), with or without ``:port``;
* a proxy given without a scheme (``proxy:3128``) is ``http://``; its ``user:password``,
  if any, goes out as ``Proxy-Authorization: Basic``.

Reading the variables once, when the client is made, is deliberate: ``requests``
re-read them (and ``~/.netrc``) on every request, a third of the client's CPU.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

#: Proxy schemes urllib3 speaks without extra packages (SOCKS would need PySocks).
SUPPORTED_SCHEMES = ("http", "https")


class ProxyConfigError(ValueError):
    """A proxy variable names something this client cannot use; the text names the variable."""


def _variable(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """(variable, value) of ``name`` in lower case, else upper case; None when neither is set (or empty)."""
    candidates = [name, name.upper()]
    if name == "http_proxy" and "REQUEST_METHOD" in environ:
        candidates = [name]  # in a CGI request HTTP_PROXY comes from the client's "Proxy:" header
    for variable in candidates:
        value = environ.get(variable, "").strip()
        if value:
            return variable, value
    return None


def bypasses_proxy(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``no_proxy`` sends ``host`` direct (see the module docstring for the rules)."""
    entries = [entry.lstrip(".") for entry in no_proxy.replace(" ", "").split(",") if entry.lstrip(".")]
    if "*" in entries:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if isinstance(address, ipaddress.IPv4Address):
        for entry in entries:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:  # a name, not an address or a block: names do not match addresses
                continue
        return False
    with_port = f"{host}:{port}" if port is not None else host
    return any(host.endswith(entry) or with_port.endswith(entry) for entry in entries)


def environment_proxy(url: str, environ: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]] | None:
    """The proxy URL for ``url`` and the headers it needs, or None to go direct.

    ``environ`` defaults to :data:`os.environ`. Raises :class:`ProxyConfigError` for a
    proxy this client cannot use (a SOCKS proxy, a URL without a host).
    """
    environ = os.environ if environ is None else environ
    target = urlsplit(url)
    if target.hostname is None:
        return None
    no_proxy = _variable(environ, "no_proxy")
    if no_proxy is not None and bypasses_proxy(target.hostname, target.port, no_proxy[1]):
        return None
    found = _variable(environ, f"{target.scheme}_proxy") or _variable(environ, "all_proxy")
    if found is None:
        return None
    variable, proxy = found
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    parsed = urlsplit(proxy)
    if parsed.scheme not in SUPPORTED_SCHEMES or not parsed.hostname:
        raise ProxyConfigError(
            f"${variable} names a proxy this client cannot use ({parsed.scheme}:// with host "
            f"{parsed.hostname!r}); it speaks {' and '.join(SUPPORTED_SCHEMES)} proxies"
        )
    headers: dict[str, str] = {}
    if parsed.username is not None:
        credentials = f"{unquote(parsed.username)}:{unquote(parsed.password or '')}"
        token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")  # RFC 7617: UTF-8
        headers = {"Proxy-Authorization": f"Basic {token}"}
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    return f"{parsed.scheme}://{netloc}", headers
