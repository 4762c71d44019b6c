"""The admin web UI at ``/admin``: server-rendered pages (Jinja2 + htmx) for staff.

``web`` holds what every page uses (rendering, the signed-in user, guards,
forms, redirects) and explains how a page adds its routes; ``pages/`` holds
one module per page; ``mount`` plugs it all into the app; ``service`` and
``repository`` keep sessions and the sign-in throttle; ``security`` the key.
"""
