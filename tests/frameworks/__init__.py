"""Small apps of the web frameworks that tests/test_frameworks.py serves with asgiws, one module
each, and the redis-server that the Django Channels tests start for channels_redis."""
