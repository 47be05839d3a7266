"""`make bench`: Staffetta against Postfix, both relaying to Postfix's own smtp-sink.

Run as ``python -m bench`` (see ``python -m bench --help``). Nothing here is imported by
the services; the harness reuses ``tests/support`` (the service stack and the DNS server).
"""
