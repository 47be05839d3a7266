"""The ingress: SMTP in, ``PREFIX.incoming`` out (Postfix's smtpd + cleanup).

Pure decisions: ``policy`` (relay and recipients), ``quota`` (sending limits),
``message`` (Received:, line ends), ``sessions``, ``replies``, ``auth`` (users
file, failure guard). Adapters: ``smtp`` (aiosmtpd protocol), ``handler``
(command hooks), ``usage`` (Redis / memory counters), ``tls``. ``service``
wires them: ``build(settings) -> IngressService``.
"""
