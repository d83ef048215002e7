"""The daemon: settings, logging and the gunicorn application that runs REST and gRPC."""
