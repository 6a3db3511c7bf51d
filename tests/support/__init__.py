"""Test helpers: fake model servers, real gunicorn/nginx/redis, log readers."""
