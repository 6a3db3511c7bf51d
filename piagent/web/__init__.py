"""The web layer: everything that knows Flask, WSGI or gunicorn.

`app.build_app` puts it together; `views/` holds one module per blueprint,
`guards/` what stands before every view (proxy, rate limits, keys, CORS), and
the other modules what the views share: the body reader, the client probe,
stream framing, request and reply schemas, the request log, the error
handlers, static files (the chat page, /docs) and the OpenAPI document
(apidoc.py records, openapi.py builds).
Nothing below this package imports it.
"""
