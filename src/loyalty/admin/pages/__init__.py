"""One module per admin page; each ends with ``ROUTES = [handler, ...]``.

Every module here is registered under ``/admin`` by ``loyalty.admin.mount``
(see ``loyalty.admin.web`` for how to write one).
"""
