"""The web dashboard (issue 12): a live, signed-in, role-aware page per campaign, served by the daemon.

``app`` builds the ASGI app, ``accounts`` signs people in (the daemon's users, with a password or an API token),
``actions`` checks and carries out what the buttons ask, ``live`` pushes a campaign's stream to its open pages,
``snapshot`` reads what a page shows from the store, ``pages`` writes the HTML, ``server`` runs it with uvicorn.
"""
