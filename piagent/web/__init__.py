"""The web layer: everything that knows Flask, WSGI or gunicorn.

`app.build_app` puts it together; `views/` holds one module per blueprint,
`guards/` what stands before every view (proxy, rate limits, keys, CORS), and
the other modules what the views share: the body reader, the client probe,
stream framing, request schemas, the request log and the error handlers.
Nothing below this package imports it.
"""
