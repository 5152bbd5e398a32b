"""`python -m oneapi.daphne_plain`: Daphne for plain HTTP, without pyOpenSSL in the process.

Twisted imports pyOpenSSL (and with it cryptography's OpenSSL bindings) on start, only to offer
STARTTLS on its TCP transports; that is ~5 MB resident in every web process. The gateway serves
plain HTTP behind the proxy or load balancer that terminates TLS, so this entry point makes
`import OpenSSL` fail before Daphne loads, and Twisted falls back to transports without TLS, as
it does where pyOpenSSL is not installed. The options are Daphne's own; for a TLS endpoint
(`-e ssl:...`) run `daphne` itself.
"""

from __future__ import annotations

import sys


def main() -> None:
    # A None entry makes the import system raise ImportError for the module.
    sys.modules.setdefault("OpenSSL", None)  # type: ignore[arg-type]
    from daphne.cli import CommandLineInterface

    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
