"""The ingress: SMTP in, ``PREFIX.incoming`` out (Postfix's smtpd + cleanup).

Pure decisions: ``policy`` (relay, recipients, address syntax), ``senders`` (which
senders an account may use), ``quota`` (sending limits and the limits file),
``message`` (Received:, line ends), ``sessions``, ``replies``, ``auth`` (users
file, failure guard). Adapters: ``smtp`` (aiosmtpd protocol), ``handler``
(command hooks), ``usage`` (Redis / memory counters), ``tls`` (certificate
reloaded on change), ``directory`` (tables re-read when their files change).
``service`` wires them: ``build(settings) -> IngressService``.
"""
