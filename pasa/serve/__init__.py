"""``pasa serve``: a local web app and JSON API over the PaSa agent.

- ``server.py``  the command: ``pasa run``'s model/source flags plus host, port, API key, concurrency; loads the models
- ``app.py``     the FastAPI app: the JSON API, Server-Sent Events, the page
- ``jobs.py``    checked search requests, their records on disk, the queue and its worker threads
- ``results.py`` [pure] ranked papers of a result tree, BibTeX, CSV, stage counts
- ``static/``    the page (``index.html``, ``app.js``, ``style.css``): no build step, nothing loaded from elsewhere
"""
